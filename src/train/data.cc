#include "duet/train/data.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "duet/core/error.h"
#include "duet/eval/metrics.h"
#include "duet/io/image.h"
#include "duet/io/preprocess.h"
#include "duet/io/tensor_file.h"

namespace duet::train {

int64_t Dataset::classes() const {
  int64_t m = -1;
  for (int64_t i = 0; labels.defined() && i < labels.numel(); ++i) m = std::max(m, labels.data<int64_t>()[i]);
  return m + 1;
}

Standardization feature_statistics(const Dataset& data) {
  DUET_CHECK(data.features.defined() && data.features.numel() > 0, "standardization needs training samples");
  const float* x = data.features.data<float>();
  const int64_t n = data.features.numel();
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  Standardization s;
  s.mean = sum / static_cast<double>(n);
  double sq = 0;
  for (int64_t i = 0; i < n; ++i) sq += (x[i] - s.mean) * (x[i] - s.mean);
  s.stddev = std::sqrt(sq / static_cast<double>(std::max<int64_t>(n - 1, 1)));  // unbiased, as torch.std
  DUET_CHECK(std::isfinite(s.mean) && std::isfinite(s.stddev), "standardization: the features are not finite");
  DUET_CHECK(s.stddev > 0 && std::isfinite(1.0 / s.stddev) && static_cast<float>(1.0 / s.stddev) < 1e30f,
             "standardization: every feature value is ", s.mean, " (standard deviation ", s.stddev, ")");
  return s;
}

Dataset Dataset::gather(const std::vector<int64_t>& indices) const {
  const int64_t per = size() > 0 ? features.numel() / size() : 0;
  Dims fd = features.dims();
  fd[0] = static_cast<int64_t>(indices.size());
  Dims ld = labels.dims();
  ld[0] = static_cast<int64_t>(indices.size());
  const int64_t width = sequences() ? labels.dim(1) : 1;
  Dataset out{Tensor(DType::Float32, fd), Tensor(DType::Int64, ld)};
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t k = indices[i];
    if (k < 0 || k >= size()) fail("dataset: index ", k, " is outside [0, ", size(), ")");
    std::memcpy(out.features.data<float>() + i * per, features.data<float>() + k * per, per * sizeof(float));
    std::memcpy(out.labels.data<int64_t>() + i * width, labels.data<int64_t>() + k * width, width * sizeof(int64_t));
  }
  return out;
}

namespace {

std::string read_text(const std::string& path) {
  if (!std::filesystem::exists(path)) fail("data file '", path, "' does not exist");
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files too
  if (!f) fail("cannot open data file '", path, "'");
  std::string text;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  const bool error = n < 0;
  gzclose(f);
  if (error) fail("data file '", path, "' is not readable (corrupt gzip?)");
  return text;
}

}  // namespace

Dataset load_csv(const std::string& path, const CsvOptions& options) {
  const std::string text = read_text(path);
  std::vector<float> values;
  std::vector<int64_t> labels;
  int64_t columns = -1, line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    std::vector<double> row;
    size_t p = 0;
    while (p <= line.size()) {
      size_t q = line.find(',', p);
      if (q == std::string_view::npos) q = line.size();
      std::string_view field = line.substr(p, q - p);
      while (!field.empty() && field.front() == ' ') field.remove_prefix(1);
      while (!field.empty() && field.back() == ' ') field.remove_suffix(1);
      double v = 0;
      auto [ptr, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
      if (ec != std::errc() || ptr != field.data() + field.size()) {
        if (line_no == 1 && labels.empty()) { row.clear(); break; }  // a header row
        fail(path, ":", line_no, ": '", std::string(field), "' is not a number");
      }
      row.push_back(v);
      p = q + 1;
    }
    if (row.empty()) continue;
    if (row.size() < 2) fail(path, ":", line_no, ": a row needs features and a label");
    if (columns < 0) columns = static_cast<int64_t>(row.size());
    if (static_cast<int64_t>(row.size()) != columns)
      fail(path, ":", line_no, ": ", row.size(), " columns, expected ", columns);
    const double label = row.back();
    if (label < 0 || label != static_cast<double>(static_cast<int64_t>(label)))
      fail(path, ":", line_no, ": label ", label, " is not a non-negative integer");
    labels.push_back(static_cast<int64_t>(label));
    for (size_t i = 0; i + 1 < row.size(); ++i) {
      if (!std::isfinite(row[i])) fail(path, ":", line_no, ": feature ", i + 1, " is ", row[i], " (features must be finite)");
      values.push_back(static_cast<float>(row[i]) * options.scale);
    }
  }
  if (labels.empty()) fail("data file '", path, "' holds no samples");
  const int64_t n = static_cast<int64_t>(labels.size()), features = columns - 1;
  Dims dims{n};
  if (options.sample_shape.empty()) dims.push_back(features);
  else {
    if (numel(options.sample_shape) != features)
      fail(path, ": rows have ", features, " features, which do not fill the sample shape ", dims_str(options.sample_shape));
    dims.insert(dims.end(), options.sample_shape.begin(), options.sample_shape.end());
  }
  return Dataset{Tensor::from_vector<float>(values, dims), Tensor::from_vector<int64_t>(labels, {n})};
}

Dataset load_npy_pair(const std::string& dir) {
  Tensor x = io::load_npy(dir + "/x.npy");
  Tensor y = io::load_npy(dir + "/y.npy");
  if (x.dtype() != DType::Float32) fail(dir, "/x.npy must hold float32 features, got ", x.describe());
  if (y.rank() != 1 || !dtype_is_integer(y.dtype())) fail(dir, "/y.npy must hold integer labels [N], got ", y.describe());
  if (x.rank() < 1 || x.dim(0) != y.dim(0))
    fail(dir, ": ", x.describe(), " features but ", y.describe(), " labels");
  for (int64_t i = 0; i < x.numel(); ++i)
    if (!std::isfinite(x.data<float>()[i]))
      fail(dir, "/x.npy: sample ", i / std::max<int64_t>(1, x.numel() / x.dim(0)), " holds a non-finite value");
  Tensor labels(DType::Int64, {y.dim(0)});
  for (int64_t i = 0; i < y.numel(); ++i) {
    labels.data<int64_t>()[i] = y.get_int(i);
    if (labels.data<int64_t>()[i] < 0) fail(dir, "/y.npy: label ", i, " is negative");
  }
  return Dataset{x, labels};
}

Dataset load_image_folder(const std::string& dir, const std::string& preprocess, int64_t channels) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) fail("image folder '", dir, "' does not exist");
  if (channels != 1 && channels != 3) fail("image folder '", dir, "': channels must be 1 or 3, got ", channels);
  const io::Preprocess pp = io::Preprocess::parse(preprocess);
  Dataset d;
  for (auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) d.class_names.push_back(e.path().filename().string());
  std::sort(d.class_names.begin(), d.class_names.end());
  if (d.class_names.empty()) fail("image folder '", dir, "' has no class subfolders (DIR/<class>/<image>)");
  std::vector<float> values;
  std::vector<int64_t> labels;
  Dims sample;
  for (size_t c = 0; c < d.class_names.size(); ++c) {
    std::vector<std::string> files;
    for (auto& e : fs::directory_iterator(fs::path(dir) / d.class_names[c]))
      if (e.is_regular_file() && io::is_image_file(e.path().string())) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    for (auto& f : files) {
      Tensor img = io::load_image(f);
      if (channels == 1) {  // PIL's convert("L"), replicated so that the spec's 3-channel steps apply
        uint8_t* p = img.data<uint8_t>();
        for (int64_t i = 0; i < img.numel() / 3; ++i) {
          const uint32_t l = (p[3 * i] * 19595u + p[3 * i + 1] * 38470u + p[3 * i + 2] * 7471u + 0x8000u) >> 16;
          p[3 * i] = p[3 * i + 1] = p[3 * i + 2] = static_cast<uint8_t>(l);
        }
      }
      Tensor x = pp.apply(img);  // [1, 3, H, W] (nchw) or [1, H, W, 3]
      if (pp.layout != io::Preprocess::Layout::NCHW) fail("image folder '", dir, "': training takes layout=nchw");
      Dims dims{channels, x.dim(2), x.dim(3)};
      if (sample.empty()) sample = dims;
      if (dims != sample)
        fail(f, ": preprocessed to ", dims_str(dims), " but earlier images gave ", dims_str(sample),
             " (fix the size with --preprocess resize=HxW)");
      const int64_t plane = x.dim(2) * x.dim(3);
      values.insert(values.end(), x.data<float>(), x.data<float>() + channels * plane);
      labels.push_back(static_cast<int64_t>(c));
    }
  }
  if (labels.empty()) fail("image folder '", dir, "' holds no PNG or JPEG images");
  Dims dims{static_cast<int64_t>(labels.size())};
  dims.insert(dims.end(), sample.begin(), sample.end());
  d.features = Tensor::from_vector<float>(values, dims);
  d.labels = Tensor::from_vector<int64_t>(labels, {static_cast<int64_t>(labels.size())});
  return d;
}

Dataset load_text_lines(const std::string& dir, const std::string& keys_path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) fail("text-line folder '", dir, "' does not exist");
  const std::vector<std::string> keys = eval::parse_metric("cer,keys=" + keys_path).labels;
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < keys.size(); ++i) index.emplace(keys[i], static_cast<int64_t>(i) + 1);
  const int64_t space = static_cast<int64_t>(keys.size()) + 1;
  std::vector<std::pair<int64_t, fs::path>> folders;
  for (auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("test_data_set_", 0) == 0) {
      const std::string tail = name.substr(14);
      int64_t n = 0;
      const auto [end, ec] = std::from_chars(tail.data(), tail.data() + tail.size(), n);
      if (ec == std::errc() && end == tail.data() + tail.size()) folders.emplace_back(n, e.path());
    }
  }
  std::sort(folders.begin(), folders.end());
  if (folders.empty()) fail("text-line folder '", dir, "' has no test_data_set_* samples");
  std::vector<float> values;
  std::vector<std::vector<int64_t>> sequences;
  Dims sample;
  size_t longest = 0;
  for (auto& [_, folder] : folders) {
    const Tensor x = io::load_tensor_file((folder / "input_0.pb").string());
    if (x.dtype() != DType::Float32 || x.rank() != 4 || x.dim(0) != 1)
      fail(folder.string(), "/input_0.pb: a text line is float32 [1, C, H, W], got ", x.describe());
    const Dims dims{x.dim(1), x.dim(2), x.dim(3)};
    if (sample.empty()) sample = dims;
    if (dims != sample) fail(folder.string(), ": ", x.describe(), " but earlier lines were [1, ", dims_str(sample), "]");
    values.insert(values.end(), x.data<float>(), x.data<float>() + x.numel());
    const std::string text = eval::reference_text(folder.string());
    std::vector<int64_t> seq;
    for (const std::string& ch : eval::utf8_characters(text)) {
      if (ch == " ") {
        seq.push_back(space);
        continue;
      }
      const auto it = index.find(ch);
      if (it == index.end()) fail(folder.string(), "/text.txt: character '", ch, "' is not in the keys file ", keys_path);
      seq.push_back(it->second);
    }
    longest = std::max(longest, seq.size());
    sequences.push_back(std::move(seq));
  }
  const int64_t n = static_cast<int64_t>(sequences.size());
  Dataset d;
  Dims dims{n};
  dims.insert(dims.end(), sample.begin(), sample.end());
  d.features = Tensor::from_vector<float>(values, dims);
  d.labels = Tensor(DType::Int64, {n, static_cast<int64_t>(std::max<size_t>(1, longest))});
  std::fill(d.labels.data<int64_t>(), d.labels.data<int64_t>() + d.labels.numel(), int64_t{-1});
  for (int64_t i = 0; i < n; ++i)
    std::copy(sequences[i].begin(), sequences[i].end(), d.labels.data<int64_t>() + i * d.labels.dim(1));
  return d;
}

namespace {
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

std::vector<int64_t> permutation(int64_t n, uint64_t seed, uint64_t stream) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  uint64_t state = seed * 0xD1B54A32D192ED03ull + stream;
  for (int64_t i = n - 1; i > 0; --i) {
    const uint64_t j = splitmix64(state) % static_cast<uint64_t>(i + 1);  // bias < 2^-50 for n < 2^14
    std::swap(p[i], p[j]);
  }
  return p;
}

std::pair<Dataset, Dataset> split(const Dataset& data, double test_fraction, uint64_t seed) {
  if (test_fraction < 0 || test_fraction >= 1) fail("test fraction ", test_fraction, " must be in [0, 1)");
  const auto p = permutation(data.size(), seed, 0x5EED);
  const int64_t n_test = static_cast<int64_t>(static_cast<double>(data.size()) * test_fraction + 0.5);
  std::vector<int64_t> train(p.begin(), p.end() - n_test), test(p.end() - n_test, p.end());
  return {data.gather(train), data.gather(test)};
}

Dataset load_dataset(const std::string& path, const CsvOptions& csv, const std::string& preprocess, int64_t channels) {
  if (std::filesystem::is_directory(path)) {
    if (std::filesystem::exists(std::filesystem::path(path) / "x.npy")) return load_npy_pair(path);
    return load_image_folder(path, preprocess, channels);
  }
  return load_csv(path, csv);
}

}  // namespace duet::train
