// Training data: a dataset held in memory (features [N, ...] float32, labels
// [N] int64), loaded from CSV (plain or gzip; one sample per row, the label in
// the last column) or from a pair of .npy files; a seeded split and seeded
// per-epoch shuffling that do not depend on the standard library's
// distributions (so a seed gives the same batches everywhere).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "duet/core/tensor.h"

namespace duet::train {

struct Dataset {
  Tensor features;  // float32 [N, ...]
  Tensor labels;    // int64 [N], or [N, S] label sequences padded with -1 (CTC: load_text_lines)
  std::vector<std::string> class_names;  // image folders: label i is class_names[i]
  int64_t size() const { return labels.defined() ? labels.dim(0) : 0; }
  bool sequences() const { return labels.defined() && labels.rank() == 2; }
  int64_t classes() const;  // max label + 1
  // The samples at these indices, in this order.
  Dataset gather(const std::vector<int64_t>& indices) const;
};

struct CsvOptions {
  Dims sample_shape;     // per-sample feature shape; empty: flat [features]
  float scale = 1.0f;    // features are multiplied by it (digits: 1/16)
};

// Throws duet::Error naming the file and line of the first malformed row.
Dataset load_csv(const std::string& path, const CsvOptions& options = {});
// DIR/x.npy (float32 [N, ...]) and DIR/y.npy (integer [N]).
Dataset load_npy_pair(const std::string& dir);

// An image folder: DIR/<class>/<image>.png|jpg, classes in name order (label
// = position), images through the preprocessing spec (io/preprocess.h; it
// must fix the size, e.g. "resize=32x32", unless all images share one) into
// [N, channels, H, W]; channels 1 converts to grey first (PIL's "L": ITU-R
// 601 luma). Throws naming an unreadable image or a size mismatch.
Dataset load_image_folder(const std::string& dir, const std::string& preprocess, int64_t channels = 3);

// Text-line images for a CTC recognizer: DIR/test_data_set_*/input_0.pb
// (float32 [1, C, H, W], one size for all) with text.txt beside each (what
// ../shared/tools/render_ocr_inputs.py writes). Each character becomes its
// 1-based line in the keys file (0 is the CTC blank), a space the class after
// the last key — PaddleOCR's reading of ppocr_keys_v1.txt. Labels [N, S],
// padded with -1. A character the keys lack is one error naming it.
Dataset load_text_lines(const std::string& dir, const std::string& keys_path);

// A CSV file (.csv / .csv.gz), a folder with x.npy / y.npy, or an image
// folder (DIR/<class>/<image>): whichever `path` is.
Dataset load_dataset(const std::string& path, const CsvOptions& csv = {}, const std::string& preprocess = "",
                     int64_t channels = 3);

// Mean and standard deviation of every feature value of a dataset (one pair
// for all features, as torchvision's Normalize with one channel); computed on
// the training split and baked into the model by prepend_standardization.
struct Standardization {
  double mean = 0, stddev = 1;
};
Standardization feature_statistics(const Dataset& data);

// splitmix64-driven Fisher-Yates permutation of [0, n) for (seed, stream).
std::vector<int64_t> permutation(int64_t n, uint64_t seed, uint64_t stream = 0);

// A seeded split: the first (1 - test_fraction) of a permutation trains.
std::pair<Dataset, Dataset> split(const Dataset& data, double test_fraction, uint64_t seed);

}  // namespace duet::train
