#include "duet/io/image.h"

#include <cstdio>  // before jpeglib.h, which uses FILE without including it
#include <jpeglib.h>  // before jerror.h, which uses its types
#include <jerror.h>
#include <png.h>

#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstring>
#include <memory>
#include <vector>

#include "duet/core/error.h"
#include "duet/io/file.h"

namespace duet::io {

namespace {

// Both libraries report fatal errors through a callback that must not return.
// The callbacks longjmp back to the decode function, which then throws: the
// frames skipped by longjmp are the libraries' C frames and the callback, none
// of which own C++ objects. Anything with a destructor lives outside the
// setjmp scope (the caller's stack) so that nothing is skipped.
struct FileCloser {
  void operator()(FILE* f) const { if (f) std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

// An image file read once, through InputFile (a regular file: not a FIFO or
// device; no window between that check and the read), and decoded from memory.
struct ImageFile {
  std::string bytes;
  File file;  // reads `bytes`
};

// Larger image files are refused before they are read (the decoded pixels
// have their own limit, kMaxImageSide).
constexpr int64_t kMaxImageFileBytes = int64_t(1) << 30;

// On the heap: the FILE points into `bytes`, which must not move.
std::unique_ptr<ImageFile> open_image(const std::string& path) {
  InputFile in(path, "image");
  DUET_CHECK(in.size() <= kMaxImageFileBytes, path, ": ", in.size(), " bytes, larger than Duet reads as an image (1 GiB)");
  auto image = std::make_unique<ImageFile>();
  image->bytes = in.read_all();
  if (!image->bytes.empty()) image->file.reset(fmemopen(image->bytes.data(), image->bytes.size(), "rb"));
  DUET_CHECK(image->bytes.empty() || image->file, "cannot read image ", path, ": ", std::strerror(errno));
  return image;
}

// Calibration and evaluation images larger than this a side are refused
// before their pixels are allocated (a 69-byte PNG may claim 30000x30000:
// 2.7 GB).
constexpr uint32_t kMaxImageSide = 16384;

bool too_large(uint32_t width, uint32_t height, char* message, size_t size) {
  if (width <= kMaxImageSide && height <= kMaxImageSide) return false;
  std::snprintf(message, size, "%ux%u pixels: larger than %u a side, Duet's limit for input images", unsigned(width),
                unsigned(height), unsigned(kMaxImageSide));
  return true;
}

// ---- PNG ----

struct PngErrorState {
  std::jmp_buf jump;
  char message[200] = {};
};

void png_fatal(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngErrorState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof(state->message), "%s", message);
  std::longjmp(state->jump, 1);
}
void png_warning_ignored(png_structp, png_const_charp) {}

struct PngDecoded {
  std::vector<uint8_t> pixels;  // RGB rows
  std::vector<png_bytep> rows;
  png_uint_32 width = 0, height = 0;
};

// Returns false with state->message set on a libpng error.
bool png_decode_rgb8(FILE* file, png_structp png, png_infop info, PngErrorState* state, PngDecoded* out) {
  if (setjmp(state->jump)) return false;
  png_init_io(png, file);
  png_read_info(png, info);
  if (too_large(png_get_image_width(png, info), png_get_image_height(png, info), state->message, sizeof state->message))
    return false;
  const int bit_depth = png_get_bit_depth(png, info);
  const int color = png_get_color_type(png, info);
  // Normalize every PNG flavour to 8-bit RGB: palette and low-bit grey expand
  // to 8 bits, 16-bit samples keep their high byte, alpha (also a tRNS colour
  // key) is dropped, grey is replicated to three channels.
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16) png_set_strip_16(png);
  if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out->width = png_get_image_width(png, info);
  out->height = png_get_image_height(png, info);
  if (png_get_rowbytes(png, info) != size_t{out->width} * 3) {
    std::snprintf(state->message, sizeof(state->message), "unexpected PNG layout after conversion to RGB");
    return false;
  }
  out->pixels.resize(size_t{out->width} * out->height * 3);
  out->rows.resize(out->height);
  for (png_uint_32 y = 0; y < out->height; ++y) out->rows[y] = out->pixels.data() + size_t{y} * out->width * 3;
  png_read_image(png, out->rows.data());
  png_read_end(png, nullptr);
  return true;
}

Tensor load_png(const std::string& path, const ImageFile& image) {
  const File& file = image.file;
  PngErrorState state;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_fatal, png_warning_ignored);
  DUET_CHECK(png, "out of memory decoding ", path);
  png_infop info = png_create_info_struct(png);
  PngDecoded decoded;
  const bool ok = info && png_decode_rgb8(file.get(), png, info, &state, &decoded);
  png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  if (!ok && std::strstr(state.message, "Duet's limit")) fail(path, ": ", state.message);
  if (!ok) fail(path, ": corrupt PNG (", state.message[0] ? state.message : "out of memory", ")");
  Tensor t(DType::UInt8, {static_cast<int64_t>(decoded.height), static_cast<int64_t>(decoded.width), 3});
  std::memcpy(t.raw(), decoded.pixels.data(), decoded.pixels.size());
  return t;
}

// ---- JPEG ----

struct JpegErrorState {
  jpeg_error_mgr mgr;  // first member: libjpeg hands back a jpeg_error_mgr*
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {};
};

void jpeg_fatal(j_common_ptr cinfo) {
  auto* state = reinterpret_cast<JpegErrorState*>(cinfo->err);
  cinfo->err->format_message(cinfo, state->message);
  std::longjmp(state->jump, 1);
}

// Warnings are ignored except a premature end of data: libjpeg then fills the
// missing rows with grey, which would be silently wrong calibration data.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_fatal(cinfo);
}

struct JpegDecoded {
  std::vector<uint8_t> pixels;
  JDIMENSION width = 0, height = 0;
};

bool jpeg_decode_rgb8(FILE* file, jpeg_decompress_struct* cinfo, JpegErrorState* state, JpegDecoded* out) {
  if (setjmp(state->jump)) return false;
  jpeg_create_decompress(cinfo);
  jpeg_stdio_src(cinfo, file);
  jpeg_read_header(cinfo, TRUE);
  if (too_large(cinfo->image_width, cinfo->image_height, state->message, sizeof state->message)) {
    jpeg_abort_decompress(cinfo);
    return false;
  }
  cinfo->out_color_space = JCS_RGB;  // grey and YCbCr convert; CMYK is refused with a message
  jpeg_start_decompress(cinfo);
  out->width = cinfo->output_width;
  out->height = cinfo->output_height;
  const size_t stride = size_t{out->width} * 3;
  out->pixels.resize(stride * out->height);
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = out->pixels.data() + stride * cinfo->output_scanline;
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_decompress(cinfo);
  return true;
}

Tensor load_jpeg(const std::string& path, const ImageFile& image) {
  const File& file = image.file;
  jpeg_decompress_struct cinfo;
  JpegErrorState state;
  cinfo.err = jpeg_std_error(&state.mgr);
  state.mgr.error_exit = jpeg_fatal;
  state.mgr.emit_message = jpeg_message;
  JpegDecoded decoded;
  const bool ok = jpeg_decode_rgb8(file.get(), &cinfo, &state, &decoded);
  jpeg_destroy_decompress(&cinfo);
  if (!ok && std::strstr(state.message, "Duet's limit")) fail(path, ": ", state.message);
  if (!ok) fail(path, ": corrupt JPEG (", state.message, ")");
  Tensor t(DType::UInt8, {static_cast<int64_t>(decoded.height), static_cast<int64_t>(decoded.width), 3});
  std::memcpy(t.raw(), decoded.pixels.data(), decoded.pixels.size());
  return t;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

bool is_image_file(const std::string& path) {
  const std::string l = lower(path);
  return ends_with(l, ".png") || ends_with(l, ".jpg") || ends_with(l, ".jpeg");
}

Tensor load_image(const std::string& path) {
  const std::unique_ptr<ImageFile> image = open_image(path);
  const auto* magic = reinterpret_cast<const unsigned char*>(image->bytes.data());
  const size_t got = image->bytes.size();
  static const unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (got >= 8 && std::memcmp(magic, kPngSignature, 8) == 0) return load_png(path, *image);
  if (got >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) return load_jpeg(path, *image);
  fail(path, ": not a PNG or JPEG image", got == 0 ? " (empty file)" : "");
}

}  // namespace duet::io
