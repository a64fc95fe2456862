// Images for calibration and evaluation data: PNG (libpng) and JPEG
// (libjpeg-turbo) decoded to uint8 RGB. preprocess.h turns them into model inputs.
#pragma once
#include <string>

#include "duet/core/tensor.h"

namespace duet::io {

// Decodes a PNG or JPEG file (recognized by its first bytes, not its name) into
// a uint8 tensor [H, W, 3], RGB. Grey, grey+alpha, palette and RGBA images
// become RGB (alpha is dropped, as PIL's convert("RGB") and OpenCV's imread
// do); 16-bit PNG samples keep their high byte. A missing, truncated or
// corrupt file throws duet::Error naming the file.
Tensor load_image(const std::string& path);
// True when the name ends in .png, .jpg or .jpeg (any case).
bool is_image_file(const std::string& path);

}  // namespace duet::io
