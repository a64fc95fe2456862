#include "duet/io/samples.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include "duet/core/error.h"
#include "duet/io/image.h"
#include "duet/io/tensor_file.h"
#include "duet/ir/graph.h"
#include "duet/onnx/onnx_io.h"

namespace duet::io {

namespace fs = std::filesystem;

namespace {

// Natural order: digit runs compare as numbers, so test_data_set_2 comes
// before test_data_set_10 and the order does not depend on zero padding.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = std::isdigit(static_cast<unsigned char>(a[i])), db = std::isdigit(static_cast<unsigned char>(b[j]));
    if (da && db) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      // Compare the runs as numbers: strip leading zeros, then longer is larger.
      size_t is = i, js = j;
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      if (const int c = a.compare(is, ie - is, b, js, je - js); c != 0) return c < 0;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  if (a.size() - i != b.size() - j) return a.size() - i < b.size() - j;
  return a < b;  // equal as numbers ("01" vs "1"): any fixed order will do
}

void sort_naturally(std::vector<std::string>& paths) {
  std::sort(paths.begin(), paths.end(), [](const std::string& a, const std::string& b) {
    return natural_less(fs::path(a).filename().string(), fs::path(b).filename().string());
  });
}

std::string lower_extension(const fs::path& p) {
  std::string e = p.extension().string();
  for (auto& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

// input_K.pb in a test_data_set folder: K → path. Other files are ignored.
// Entries of a folder; unreadable folders throw duet::Error naming them.
std::vector<fs::directory_entry> list_folder(const std::string& folder) {
  std::error_code ec;
  fs::directory_iterator it(folder, ec);
  DUET_CHECK(!ec, "cannot list ", folder, ": ", ec.message());
  std::vector<fs::directory_entry> entries;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    DUET_CHECK(!ec, "cannot list ", folder, ": ", ec.message());
    entries.push_back(*it);
  }
  DUET_CHECK(!ec, "cannot list ", folder, ": ", ec.message());
  return entries;
}

std::map<int64_t, std::string> input_files(const std::string& folder) {
  std::map<int64_t, std::string> files;
  for (const auto& e : list_folder(folder)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name.rfind("input_", 0) != 0 || lower_extension(e.path()) != ".pb") continue;
    const std::string index = name.substr(6, name.size() - 6 - 3);
    if (index.empty() || index.size() > 6 || index.find_first_not_of("0123456789") != std::string::npos) continue;
    files[std::stoll(index)] = e.path().string();
  }
  return files;
}

std::string type_str(DType dtype, const Shape& shape) {
  return std::string(dtype == DType::Undefined ? "any type" : dtype_name(dtype)) + " " + shape.str();
}

std::string input_names(const std::vector<ModelInput>& inputs) {
  std::string s;
  for (const auto& in : inputs) s += (s.empty() ? "" : ", ") + in.name;
  return s;
}

// The first NaN or Inf element, or -1.
template <typename T>
int64_t first_non_finite(const T* data, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(data[i])) return i;
  }
  return -1;
}

void check_finite(const Tensor& t, const std::string& input, const std::string& file) {
  if (!dtype_is_float(t.dtype())) return;
  int64_t bad = -1;
  double value = 0.0;
  if (t.dtype() == DType::Float32) {
    bad = first_non_finite(t.data<float>(), t.numel());
    if (bad >= 0) value = t.data<float>()[bad];
  } else if (t.dtype() == DType::Float64) {
    bad = first_non_finite(t.data<double>(), t.numel());
    if (bad >= 0) value = t.data<double>()[bad];
  } else {
    for (int64_t i = 0; i < t.numel() && bad < 0; ++i) {
      value = t.get_double(i);
      if (!std::isfinite(value)) bad = i;
    }
  }
  if (bad >= 0) fail(std::isnan(value) ? "NaN" : "Inf", " in ", file, " (input '", input, "', element ", bad, ")");
}

// t as the model input takes it, or duet::Error naming file.
Tensor checked(Tensor t, const ModelInput& input, const std::string& file) {
  const Shape& want = input.shape;
  bool fits = input.dtype == DType::Undefined || t.dtype() == input.dtype;
  if (want.rank_known) {
    fits = fits && t.rank() == want.rank();
    for (size_t d = 0; fits && d < want.rank(); ++d) fits = !want.dims[d].known() || want.dims[d].value == t.dims()[d];
  }
  DUET_CHECK(fits, file, ": input '", input.name, "' expects ", type_str(input.dtype, want), ", got ",
             dtype_name(t.dtype()), " ", Shape::from(t.dims()).str());
  check_finite(t, input.name, file);
  return t;
}

}  // namespace

std::vector<ModelInput> formal_inputs(const ir::Graph& graph) {
  std::vector<ModelInput> inputs;
  for (const ir::Value* v : graph.inputs) {
    if (graph.is_initializer(v)) continue;
    if (v->type.kind != ir::ValueType::Kind::Tensor)
      unsupported("input '", v->name, "' is a ", v->type.str(), "; sample data feeds tensors only");
    inputs.push_back({v->name, v->type.dtype, v->type.shape});
  }
  return inputs;
}

SampleFolder::SampleFolder(const std::string& dir, const ir::Graph& graph, std::optional<Preprocess> preprocess)
    : SampleFolder(dir, formal_inputs(graph), std::move(preprocess)) {}

SampleFolder::SampleFolder(const std::string& dir, std::vector<ModelInput> inputs, std::optional<Preprocess> preprocess)
    : dir_(dir), inputs_(std::move(inputs)), preprocess_(preprocess.value_or(Preprocess{})) {
  std::error_code ec;
  DUET_CHECK(fs::exists(dir, ec), "sample folder not found: ", dir);
  DUET_CHECK(fs::is_directory(dir, ec), "not a directory: ", dir, " (expected a folder of samples)");
  DUET_CHECK(!inputs_.empty(), "the model has no inputs to feed from ", dir);

  std::vector<std::string> sets, tensor_files, images;
  for (const auto& e : list_folder(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory()) {
      if (name.rfind("test_data_set_", 0) == 0) sets.push_back(e.path().string());
    } else if (e.is_regular_file()) {
      const std::string ext = lower_extension(e.path());
      if (ext == ".npy" || ext == ".pb") tensor_files.push_back(e.path().string());
      else if (is_image_file(name)) images.push_back(e.path().string());
    }
  }
  const bool dir_is_one_set = !input_files(dir).empty();
  if (dir_is_one_set || !sets.empty()) {
    layout_ = Layout::TestDataSets;
    samples_ = dir_is_one_set ? std::vector<std::string>{dir} : sets;
  } else if (!tensor_files.empty() || !images.empty()) {
    DUET_CHECK(tensor_files.empty() || images.empty(), dir, " mixes tensor files and images (",
               fs::path(tensor_files[0]).filename().string(), ", ", fs::path(images[0]).filename().string(),
               "); keep one kind per folder");
    layout_ = images.empty() ? Layout::TensorFiles : Layout::Images;
    samples_ = images.empty() ? tensor_files : images;
    DUET_CHECK(inputs_.size() == 1, dir, " holds one ", images.empty() ? "tensor file" : "image",
               " per sample, which feeds a one-input model; the model has ", inputs_.size(), " inputs (",
               input_names(inputs_), "): use test_data_set_*/input_K.pb folders");
  } else {
    fail("no calibration samples in ", dir, ": expected test_data_set_*/input_*.pb, .npy/.pb files or images");
  }
  sort_naturally(samples_);

  if (layout_ == Layout::Images) {
    const ModelInput& in = inputs_[0];
    if (in.dtype != DType::Undefined && in.dtype != DType::Float32)
      unsupported(dir, " holds images, which become float32 tensors; input '", in.name, "' is ", dtype_name(in.dtype));
    // The spec must fit the input before any image is read: layout, channels
    // and, where the spec fixes the size, the static H×W.
    const auto size = [&] {
      try {
        return preprocess_.output_size(in.shape);
      } catch (const Unsupported&) {
        throw;
      } catch (const Error& e) {
        fail(dir, ": ", e.what());
      }
    }();
    if (size) {
      const Dims dims = preprocess_.layout == Preprocess::Layout::NCHW ? Dims{1, 3, size->first, size->second}
                                                                      : Dims{1, size->first, size->second, 3};
      checked(Tensor::zeros(DType::Float32, dims), in, "preprocess spec '" + preprocess_.str() + "'");
    }
  } else {
    DUET_CHECK(!preprocess, "a preprocess spec applies to images; ", dir, " holds ",
               layout_ == Layout::TestDataSets ? "test_data_set folders" : "tensor files");
  }
  // A missing input file is found now rather than samples into a long run.
  if (layout_ == Layout::TestDataSets) {
    for (const std::string& set : samples_) {
      const auto files = input_files(set);
      for (size_t k = 0; k < inputs_.size(); ++k) {
        DUET_CHECK(files.count(static_cast<int64_t>(k)), set, " has no input_", k, ".pb for input '", inputs_[k].name,
                   "' (the model takes ", inputs_.size(), " inputs)");
      }
      const int64_t last = files.rbegin()->first;
      DUET_CHECK(last < static_cast<int64_t>(inputs_.size()), files.rbegin()->second, ": the model takes only ",
                 inputs_.size(), " input", inputs_.size() == 1 ? "" : "s", " (", input_names(inputs_),
                 "); input_K.pb files together are one sample, so name one-file samples otherwise");
    }
  }
}

std::string SampleFolder::describe() const {
  std::ostringstream os;
  os << samples_.size() << " ";
  if (layout_ == Layout::TestDataSets) os << (samples_.size() == 1 ? "test data set" : "test data sets");
  else if (layout_ == Layout::TensorFiles) os << (samples_.size() == 1 ? "tensor file" : "tensor files");
  else os << (samples_.size() == 1 ? "image" : "images");
  os << " in " << dir_;
  if (layout_ == Layout::Images) os << " (preprocess: " << preprocess_.str() << ")";
  return os.str();
}

std::map<std::string, Tensor> SampleFolder::load_test_data_set(const std::string& folder) const {
  const auto files = input_files(folder);
  std::vector<Tensor> tensors;
  std::vector<std::string> names, paths;
  for (size_t k = 0; k < inputs_.size(); ++k) {
    auto it = files.find(static_cast<int64_t>(k));
    DUET_CHECK(it != files.end(), folder, " has no input_", k, ".pb for input '", inputs_[k].name, "'");
    std::string name;
    tensors.push_back(onnx_io::load_tensor_pb(it->second, &name));
    names.push_back(name);
    paths.push_back(it->second);
  }
  // Names decide only when every file names a distinct model input; backend
  // tests often name tensors differently from the graph (or not at all).
  std::map<std::string, size_t> by_name;
  for (size_t k = 0; k < inputs_.size(); ++k) by_name[inputs_[k].name] = k;
  std::set<std::string> distinct(names.begin(), names.end());
  bool use_names = distinct.size() == names.size();
  for (const auto& n : names) use_names = use_names && by_name.count(n);

  std::map<std::string, Tensor> sample;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const ModelInput& input = inputs_[use_names ? by_name.at(names[k]) : k];
    sample[input.name] = checked(std::move(tensors[k]), input, paths[k]);
  }
  return sample;
}

std::map<std::string, Tensor> SampleFolder::load(size_t i) const {
  DUET_CHECK(i < samples_.size(), "sample ", i, " out of range: ", describe());
  const std::string& path = samples_[i];
  if (layout_ == Layout::TestDataSets) return load_test_data_set(path);
  const ModelInput& input = inputs_[0];
  Tensor t = layout_ == Layout::TensorFiles ? load_tensor_file(path) : preprocess_.apply(load_image(path), input.shape);
  return {{input.name, checked(std::move(t), input, path)}};
}

}  // namespace duet::io
