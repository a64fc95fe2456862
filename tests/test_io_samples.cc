// Calibration / evaluation data input: image decoding, preprocessing specs and
// sample folders (io/image.h, io/preprocess.h, io/samples.h).
#include <gtest/gtest.h>
#include <jpeglib.h>
#include <png.h>
#include <sys/stat.h>
#include <zlib.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "duet/train/data.h"
#include "duet/core/error.h"
#include "duet/io/file.h"
#include "duet/io/image.h"
#include "duet/io/preprocess.h"
#include "duet/io/samples.h"
#include "duet/io/tensor_file.h"
#include "duet/ir/graph.h"
#include "duet/onnx/onnx_io.h"
#include "test_util.h"

using namespace duet;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("duet_test_io_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// The message of the duet::Error that f throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR_CONTAINS(expr, text)                                   \
  do {                                                                       \
    const std::string message_ = error_of([&] { (void)(expr); });            \
    EXPECT_NE(message_.find(text), std::string::npos)                        \
        << "expected an error containing \"" << (text) << "\", got \"" << message_ << "\""; \
  } while (0)

// ---- test image encoders (libpng / libjpeg) ----

// rows: height rows of packed samples in the given PNG color type and depth.
void write_png(const fs::path& path, int width, int height, int color_type, int bit_depth,
               const std::vector<uint8_t>& data, const std::vector<png_color>& palette = {}) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_TRUE(f);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    FAIL() << "libpng could not write " << path;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, width, height, bit_depth, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!palette.empty()) png_set_PLTE(png, info, palette.data(), static_cast<int>(palette.size()));
  png_write_info(png, info);
  const size_t stride = data.size() / height;
  for (int y = 0; y < height; ++y) png_write_row(png, data.data() + y * stride);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
}

// components 3 (RGB) or 1 (grey); quality 100 without chroma subsampling so the
// decoded pixels stay within a few levels of the source.
void write_jpeg(const fs::path& path, int width, int height, int components, const std::vector<uint8_t>& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_TRUE(f);
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, f);
  c.image_width = width;
  c.image_height = height;
  c.input_components = components;
  c.in_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 100, TRUE);
  for (int i = 0; i < c.num_components; ++i) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(data.data()) + size_t{c.next_scanline} * width * components;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::fclose(f);
}

std::vector<uint8_t> pixels(const Tensor& t) { return {t.data<uint8_t>(), t.data<uint8_t>() + t.numel()}; }

std::vector<float> floats(const Tensor& t) { return {t.data<float>(), t.data<float>() + t.numel()}; }

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

io::ModelInput image_input(Shape shape) { return {"x", DType::Float32, std::move(shape)}; }

}  // namespace

// ---- decoding ----

TEST(ImageDecode, EveryPngFlavourBecomesRgb8) {
  const fs::path dir = temp_dir("png");
  // 2x2 RGB: exact.
  write_png(dir / "rgb.png", 2, 2, PNG_COLOR_TYPE_RGB, 8, {1, 2, 3, 4, 5, 6, /**/ 7, 8, 9, 250, 251, 252});
  Tensor rgb = io::load_image((dir / "rgb.png").string());
  EXPECT_EQ(rgb.dtype(), DType::UInt8);
  EXPECT_EQ(rgb.dims(), (Dims{2, 2, 3}));
  EXPECT_EQ(pixels(rgb), (std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 250, 251, 252}));

  // Grey replicates to three channels.
  write_png(dir / "grey.png", 3, 1, PNG_COLOR_TYPE_GRAY, 8, {0, 128, 255});
  EXPECT_EQ(pixels(io::load_image((dir / "grey.png").string())),
            (std::vector<uint8_t>{0, 0, 0, 128, 128, 128, 255, 255, 255}));

  // 1-bit grey expands to 0 / 255.
  write_png(dir / "grey1.png", 2, 1, PNG_COLOR_TYPE_GRAY, 1, {0b10000000});
  EXPECT_EQ(pixels(io::load_image((dir / "grey1.png").string())), (std::vector<uint8_t>{255, 255, 255, 0, 0, 0}));

  // Alpha is dropped, not composited.
  write_png(dir / "rgba.png", 2, 1, PNG_COLOR_TYPE_RGBA, 8, {10, 20, 30, 0, 40, 50, 60, 128});
  EXPECT_EQ(pixels(io::load_image((dir / "rgba.png").string())), (std::vector<uint8_t>{10, 20, 30, 40, 50, 60}));
  write_png(dir / "grey_alpha.png", 1, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, {77, 5});
  EXPECT_EQ(pixels(io::load_image((dir / "grey_alpha.png").string())), (std::vector<uint8_t>{77, 77, 77}));

  // Palette indices map to their colours.
  write_png(dir / "palette.png", 3, 1, PNG_COLOR_TYPE_PALETTE, 8, {2, 0, 1},
            {{255, 0, 0}, {0, 255, 0}, {9, 8, 7}});
  EXPECT_EQ(pixels(io::load_image((dir / "palette.png").string())),
            (std::vector<uint8_t>{9, 8, 7, 255, 0, 0, 0, 255, 0}));

  // 16-bit samples (big-endian in the file) keep their high byte.
  write_png(dir / "rgb16.png", 1, 1, PNG_COLOR_TYPE_RGB, 16, {0x12, 0x34, 0xAB, 0xCD, 0xFF, 0xFF});
  EXPECT_EQ(pixels(io::load_image((dir / "rgb16.png").string())), (std::vector<uint8_t>{0x12, 0xAB, 0xFF}));
  fs::remove_all(dir);
}

TEST(ImageDecode, JpegRgbAndGreyDecodeCloseToTheSource) {
  const fs::path dir = temp_dir("jpeg");
  const int w = 16, h = 8;
  std::vector<uint8_t> rgb(w * h * 3), grey(w * h);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const int i = y * w + x;
      rgb[i * 3 + 0] = static_cast<uint8_t>(x * 15);
      rgb[i * 3 + 1] = static_cast<uint8_t>(y * 30);
      rgb[i * 3 + 2] = static_cast<uint8_t>(200 - x * 5);
      grey[i] = static_cast<uint8_t>(x * 8 + y * 4);
    }
  }
  write_jpeg(dir / "rgb.jpg", w, h, 3, rgb);
  write_jpeg(dir / "grey.JPEG", w, h, 1, grey);
  Tensor a = io::load_image((dir / "rgb.jpg").string());
  ASSERT_EQ(a.dims(), (Dims{h, w, 3}));
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_NEAR(a.data<uint8_t>()[i], rgb[i], 4) << "element " << i;
  Tensor b = io::load_image((dir / "grey.JPEG").string());
  ASSERT_EQ(b.dims(), (Dims{h, w, 3}));
  for (int64_t i = 0; i < w * h; ++i) {
    EXPECT_NEAR(b.data<uint8_t>()[i * 3], grey[i], 2) << "pixel " << i;
    EXPECT_EQ(b.data<uint8_t>()[i * 3], b.data<uint8_t>()[i * 3 + 1]);
    EXPECT_EQ(b.data<uint8_t>()[i * 3], b.data<uint8_t>()[i * 3 + 2]);
  }
  EXPECT_TRUE(io::is_image_file("a/B.JPG") && io::is_image_file("c.png") && !io::is_image_file("d.npy"));
  fs::remove_all(dir);
}

TEST(ImageDecode, MissingOrCorruptFilesThrowNamingTheFile) {
  const fs::path dir = temp_dir("bad_images");
  const std::string missing = (dir / "missing.png").string();
  EXPECT_ERROR_CONTAINS(io::load_image(missing), "file not found: " + missing);

  write_bytes(dir / "text.png", "hello, not an image");
  EXPECT_ERROR_CONTAINS(io::load_image((dir / "text.png").string()), (dir / "text.png").string() + ": not a PNG or JPEG image");
  write_bytes(dir / "empty.jpg", "");
  EXPECT_ERROR_CONTAINS(io::load_image((dir / "empty.jpg").string()), "(empty file)");

  // A PNG signature followed by garbage, and a PNG cut in half.
  write_bytes(dir / "garbage.png", std::string("\x89PNG\r\n\x1a\n", 8) + "garbage garbage garbage garbage");
  EXPECT_ERROR_CONTAINS(io::load_image((dir / "garbage.png").string()), (dir / "garbage.png").string() + ": corrupt PNG (");
  std::vector<uint8_t> big(64 * 64 * 3);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7919 % 251);
  write_png(dir / "whole.png", 64, 64, PNG_COLOR_TYPE_RGB, 8, big);
  const std::string png_bytes = read_bytes(dir / "whole.png");
  write_bytes(dir / "cut.png", png_bytes.substr(0, png_bytes.size() / 2));
  EXPECT_ERROR_CONTAINS(io::load_image((dir / "cut.png").string()), (dir / "cut.png").string() + ": corrupt PNG (");

  // JPEG: libjpeg's default handler would exit() the process here.
  write_bytes(dir / "garbage.jpg", std::string("\xFF\xD8\xFF", 3) + "garbage garbage garbage garbage");
  EXPECT_ERROR_CONTAINS(io::load_image((dir / "garbage.jpg").string()), (dir / "garbage.jpg").string() + ": corrupt JPEG (");
  write_jpeg(dir / "whole.jpg", 64, 64, 3, big);
  const std::string jpeg_bytes = read_bytes(dir / "whole.jpg");
  write_bytes(dir / "cut.jpg", jpeg_bytes.substr(0, jpeg_bytes.size() / 2));
  EXPECT_ERROR_CONTAINS(io::load_image((dir / "cut.jpg").string()),
                        (dir / "cut.jpg").string() + ": corrupt JPEG (Premature end of JPEG file)");
  fs::remove_all(dir);
}

// ---- resize ----

TEST(Resize, BilinearMatchesHandComputedValues) {
  // Upscaling 2 → 4: output centres at 0.25, 0.75, 1.25, 1.75 input pixels;
  // the edge ones clamp to a single pixel, the middle ones mix 3:1.
  Tensor up = io::resize_bilinear(Tensor::from_vector<uint8_t>({0, 100}, {1, 2, 1}), 1, 4);
  EXPECT_EQ(pixels(up), (std::vector<uint8_t>{0, 25, 75, 100}));
  // Downscaling 4 → 2 widens the triangle to radius 2: output 0 (centre 1)
  // weighs inputs 0,1,2 as .75:.75:.25 → (0*.75 + 100*.75 + 200*.25)/1.75 = 71.4;
  // output 1 (centre 3) weighs 1,2,3 as .25:.75:.75 → (25 + 150 + 45)/1.75 = 125.7.
  Tensor down = io::resize_bilinear(Tensor::from_vector<uint8_t>({0, 100, 200, 60}, {1, 4, 1}), 1, 2);
  EXPECT_EQ(pixels(down), (std::vector<uint8_t>{71, 126}));
}

TEST(Resize, TwoDimensionalCasesEqualPil) {
  // Expected values from PIL: Image.fromarray(a).resize((W, H), Image.BILINEAR).
  Tensor a = Tensor::from_vector<uint8_t>({10, 200, 30, 90, 0, 255}, {2, 3, 1});
  EXPECT_EQ(pixels(io::resize_bilinear(a, 3, 5)),
            (std::vector<uint8_t>{10, 86, 200, 98, 30, 50, 70, 100, 126, 143, 90, 54, 0, 153, 255}));
  Tensor b = Tensor::from_vector<uint8_t>(
      {0, 50, 100, 150, 200, 250, 250, 200, 150, 100, 50, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {4, 6, 1});
  EXPECT_EQ(pixels(io::resize_bilinear(b, 3, 4)),
            (std::vector<uint8_t>{83, 111, 139, 167, 116, 82, 47, 13, 5, 7, 8, 10}));
  // Channels are independent: the same image in all three channels of RGB.
  Tensor rgb(DType::UInt8, {4, 6, 3});
  for (int64_t i = 0; i < 24; ++i)
    for (int c = 0; c < 3; ++c) rgb.data<uint8_t>()[i * 3 + c] = b.data<uint8_t>()[i];
  Tensor r = io::resize_bilinear(rgb, 3, 4);
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(r.data<uint8_t>()[i * 3 + 2], pixels(io::resize_bilinear(b, 3, 4))[i]);
}

// ---- preprocessing spec ----

TEST(Preprocess, ParsesThePaddleOcrRecognizerSpecAndRoundTrips) {
  const auto p = io::Preprocess::parse(
      "resize=48x320, keep_ratio,pad=right,scale=1/255,mean=0.5:0.5:0.5,std=0.5:0.5:0.5,order=bgr,layout=nchw");
  EXPECT_EQ(p.resize, io::Preprocess::Resize::Fixed);
  EXPECT_EQ(p.height, 48);
  EXPECT_EQ(p.width, 320);
  EXPECT_TRUE(p.keep_ratio);
  EXPECT_EQ(p.scale, 1.0 / 255.0);
  EXPECT_EQ(p.mean, (std::array<double, 3>{0.5, 0.5, 0.5}));
  EXPECT_EQ(p.std, (std::array<double, 3>{0.5, 0.5, 0.5}));
  EXPECT_EQ(p.order, io::Preprocess::Order::BGR);
  EXPECT_EQ(p.layout, io::Preprocess::Layout::NCHW);
  EXPECT_EQ(p.str(), "resize=48x320,keep_ratio,pad=right,scale=1/255,mean=0.5:0.5:0.5,std=0.5:0.5:0.5,order=bgr,layout=nchw");
  EXPECT_EQ(io::Preprocess::parse(p.str()).str(), p.str());

  // The empty spec is the default: model-input size, 1/255, RGB, NCHW.
  const auto d = io::Preprocess::parse("");
  EXPECT_EQ(d.resize, io::Preprocess::Resize::ToModelInput);
  EXPECT_FALSE(d.keep_ratio);
  EXPECT_EQ(d.scale, 1.0 / 255.0);
  EXPECT_EQ(d.str(), "scale=1/255,mean=0:0:0,std=1:1:1,order=rgb,layout=nchw");

  // One number stands for all three channels; decimals and exponents parse.
  const auto e = io::Preprocess::parse("resize=none,mean=0.485:0.456:0.406,std=0.25,scale=1e-2,layout=nhwc");
  EXPECT_EQ(e.resize, io::Preprocess::Resize::None);
  EXPECT_EQ(e.std, (std::array<double, 3>{0.25, 0.25, 0.25}));
  EXPECT_EQ(e.mean[1], 0.456);
  EXPECT_EQ(e.scale, 0.01);
  EXPECT_EQ(io::Preprocess::parse(e.str()).str(), e.str());
}

TEST(Preprocess, ErrorsNameTheBadKey) {
  using io::Preprocess;
  EXPECT_ERROR_CONTAINS(Preprocess::parse("resize=48x320,colour=red"), "unknown key 'colour'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("resize=48by320"), "bad value for 'resize': '48by320'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("resize=0x320"), "bad value for 'resize': '0x320'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("resize"), "'resize' needs a value");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("scale=abc"), "bad value for 'scale': 'abc'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("scale=1/0"), "bad value for 'scale': '1/0'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("mean=1:2"), "bad value for 'mean': '1:2'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("std=1:0:1"), "bad value for 'std': '1:0:1'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("order=gbr"), "bad value for 'order': 'gbr'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("layout=chw"), "bad value for 'layout': 'chw'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("keep_ratio=yes"), "'keep_ratio' takes no value");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("scale=1,scale=2"), "'scale' is given twice");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("resize=4x4,keep_ratio,pad=left"), "bad value for 'pad': 'left'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("pad=right"), "'pad=right' needs 'keep_ratio'");
  EXPECT_ERROR_CONTAINS(Preprocess::parse("resize=none,keep_ratio"), "'keep_ratio' needs a target size");
}

TEST(Preprocess, AppliesScaleMeanStdChannelOrderAndLayout) {
  // Two pixels (10,20,30) and (40,50,60); BGR output puts blue first.
  Tensor image = Tensor::from_vector<uint8_t>({10, 20, 30, 40, 50, 60}, {1, 2, 3});
  auto p = io::Preprocess::parse("resize=none,scale=1/10,mean=1:2:3,std=2:4:8,order=bgr");
  Tensor nchw = p.apply(image);
  EXPECT_EQ(nchw.dtype(), DType::Float32);
  EXPECT_EQ(nchw.dims(), (Dims{1, 3, 1, 2}));
  // B: (3-1)/2, (6-1)/2; G: (2-2)/4, (5-2)/4; R: (1-3)/8, (4-3)/8.
  const std::vector<float> want = {1.0f, 2.5f, 0.0f, 0.75f, -0.25f, 0.125f};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(floats(nchw)[i], want[i], 1e-6) << i;

  p.layout = io::Preprocess::Layout::NHWC;
  Tensor nhwc = p.apply(image);
  EXPECT_EQ(nhwc.dims(), (Dims{1, 1, 2, 3}));
  const std::vector<float> want_nhwc = {1.0f, 0.0f, -0.25f, 2.5f, 0.75f, 0.125f};
  for (size_t i = 0; i < want_nhwc.size(); ++i) EXPECT_NEAR(floats(nhwc)[i], want_nhwc[i], 1e-6) << i;
}

TEST(Preprocess, KeepRatioResizesTheHeightAndPadsRightWithZeros) {
  auto p = io::Preprocess::parse("resize=4x10,keep_ratio,pad=right,mean=0.5,std=0.5");
  // 2x3 white image → height 4, width ceil(4*3/2) = 6, then 4 zero columns.
  Tensor white(DType::UInt8, {2, 3, 3});
  std::fill(white.data<uint8_t>(), white.data<uint8_t>() + white.numel(), uint8_t{255});
  Tensor out = p.apply(white);
  ASSERT_EQ(out.dims(), (Dims{1, 3, 4, 10}));
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 4; ++y) {
      for (int x = 0; x < 10; ++x) EXPECT_EQ(out.data<float>()[(c * 4 + y) * 10 + x], x < 6 ? 1.0f : 0.0f) << c << y << x;
    }
  }
  // A wide image is capped at the target width: no padding left.
  Tensor wide(DType::UInt8, {1, 10, 3});
  std::fill(wide.data<uint8_t>(), wide.data<uint8_t>() + wide.numel(), uint8_t{255});
  Tensor capped = p.apply(wide);
  for (float v : floats(capped)) EXPECT_EQ(v, 1.0f);
}

TEST(Preprocess, DefaultSpecResizesToTheModelInputsStaticSize) {
  const auto d = io::Preprocess::parse("");
  Tensor image(DType::UInt8, {2, 3, 3});
  std::fill(image.data<uint8_t>(), image.data<uint8_t>() + image.numel(), uint8_t{51});
  const Shape fixed({Dim::named("N"), Dim(3), Dim(4), Dim(6)});
  Tensor out = d.apply(image, fixed);
  EXPECT_EQ(out.dims(), (Dims{1, 3, 4, 6}));
  for (float v : floats(out)) EXPECT_FLOAT_EQ(v, 0.2f);
  // Symbolic H and W: the image keeps its size.
  const Shape dynamic({Dim::named("N"), Dim(3), Dim::named("H"), Dim::named("W")});
  EXPECT_EQ(d.apply(image, dynamic).dims(), (Dims{1, 3, 2, 3}));
  EXPECT_EQ(io::Preprocess::parse("layout=nhwc").apply(image, Shape({Dim(1), Dim(5), Dim(7), Dim(3)})).dims(),
            (Dims{1, 5, 7, 3}));
  // Inputs that cannot take an RGB image in the layout.
  EXPECT_ERROR_CONTAINS(d.apply(image, Shape({Dim(1), Dim(1), Dim(4), Dim(6)})), "has 1 channels in layout nchw");
  EXPECT_ERROR_CONTAINS(d.apply(image, Shape({Dim(1), Dim(12)})), "an image becomes a rank-4 nchw tensor");
  EXPECT_ERROR_CONTAINS(io::Preprocess::parse("resize=none").apply(Tensor(DType::Float32, {2, 2, 3})),
                        "expected a uint8 [H, W, 3] RGB image");
}

TEST(Preprocess, MatchesPaddleOcrRecognizerInputsMadeWithPil) {
  DUET_REQUIRE_SHARED();
  const fs::path rec = fs::path(testutil::shared_dir()) / "models/paddleocr/testdata/rec";
  if (!fs::exists(rec / "line_0.png") || !fs::exists(rec / "test_data_set_0/input_0.pb"))
    GTEST_SKIP() << rec << " has no line_0.png and test_data_set_0/input_0.pb (made by shared/tools/render_ocr_inputs.py)";
  // test_data_set_0/input_0.pb is rec_tensor(line_0.png): PIL bilinear resize,
  // BGR, (x/255 - 0.5)/0.5, zero padding to width 320.
  const auto p = io::Preprocess::parse(
      "resize=48x320,keep_ratio,pad=right,scale=1/255,mean=0.5:0.5:0.5,std=0.5:0.5:0.5,order=bgr,layout=nchw");
  Tensor image = io::load_image((rec / "line_0.png").string());
  Tensor got = p.apply(image, Shape({Dim::named("N"), Dim(3), Dim(48), Dim::named("W")}));
  Tensor want = onnx_io::load_tensor_pb((rec / "test_data_set_0/input_0.pb").string());
  ASSERT_EQ(got.dims(), want.dims());
  double worst = 0.0;
  for (int64_t i = 0; i < got.numel(); ++i)
    worst = std::max(worst, static_cast<double>(std::abs(got.data<float>()[i] - want.data<float>()[i])));
  // Same resized pixels; only float rounding of (x/255 - 0.5)/0.5 may differ.
  EXPECT_LT(worst, 1e-6) << "largest difference from PIL's preprocessing";
}

// ---- sample folders ----

namespace {
// Two inputs: x float32 [N, 2] and y int64 [3].
std::vector<io::ModelInput> two_inputs() {
  return {{"x", DType::Float32, Shape({Dim::named("N"), Dim(2)})}, {"y", DType::Int64, Shape({Dim(3)})}};
}

void write_set(const fs::path& set, float x0, const std::string& x_name = "", const std::string& y_name = "") {
  fs::create_directories(set);
  io::save_tensor_file(Tensor::from_vector<float>({x0, x0 + 1}, {1, 2}), x_name, (set / "input_0.pb").string());
  io::save_tensor_file(Tensor::from_vector<int64_t>({7, 8, 9}, {3}), y_name, (set / "input_1.pb").string());
}
}  // namespace

TEST(SampleFolder, TestDataSetsLoadInNaturalOrder) {
  const fs::path dir = temp_dir("sets");
  for (int i : {10, 2, 0, 1}) write_set(dir / ("test_data_set_" + std::to_string(i)), static_cast<float>(i));
  write_bytes(dir / "test_data_set_0" / "output_0.pb", "ignored");
  write_bytes(dir / "README.txt", "ignored");
  io::SampleFolder folder(dir.string(), two_inputs());
  EXPECT_EQ(folder.layout(), io::SampleFolder::Layout::TestDataSets);
  ASSERT_EQ(folder.size(), 4u);
  EXPECT_EQ(fs::path(folder.sample_path(2)).filename(), "test_data_set_2");
  EXPECT_EQ(fs::path(folder.sample_path(3)).filename(), "test_data_set_10");
  EXPECT_EQ(folder.describe(), "4 test data sets in " + dir.string());
  auto s = folder.load(3);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(floats(s.at("x")), (std::vector<float>{10.0f, 11.0f}));
  EXPECT_EQ(s.at("y").to_int_vector(), (std::vector<int64_t>{7, 8, 9}));

  // DIR itself may be one test_data_set folder.
  io::SampleFolder one((dir / "test_data_set_1").string(), two_inputs());
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(floats(one.load(0).at("x")), (std::vector<float>{1.0f, 2.0f}));
  fs::remove_all(dir);
}

TEST(SampleFolder, TensorProtoNamesDecideWhenTheyAllNameInputs) {
  const fs::path dir = temp_dir("names");
  // input_0.pb holds y and input_1.pb holds x, as their names say.
  fs::create_directories(dir / "test_data_set_0");
  io::save_tensor_file(Tensor::from_vector<int64_t>({1, 2, 3}, {3}), "y", (dir / "test_data_set_0/input_0.pb").string());
  io::save_tensor_file(Tensor::from_vector<float>({4, 5}, {1, 2}), "x", (dir / "test_data_set_0/input_1.pb").string());
  auto s = io::SampleFolder(dir.string(), two_inputs()).load(0);
  EXPECT_EQ(s.at("y").to_int_vector(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(floats(s.at("x")), (std::vector<float>{4.0f, 5.0f}));
  fs::remove_all(dir);
}

TEST(SampleFolder, FlatTensorFilesFeedAOneInputModel) {
  const fs::path dir = temp_dir("flat");
  const std::vector<io::ModelInput> input = {{"x", DType::Float32, Shape({Dim::named("N"), Dim(2)})}};
  io::save_tensor_file(Tensor::from_vector<float>({1, 2}, {1, 2}), "x", (dir / "s9.npy").string());
  io::save_tensor_file(Tensor::from_vector<float>({3, 4, 5, 6}, {2, 2}), "x", (dir / "s10.pb").string());
  io::save_tensor_file(Tensor::from_vector<float>({7, 8}, {1, 2}), "x", (dir / "s1.npy").string());
  io::SampleFolder folder(dir.string(), input);
  EXPECT_EQ(folder.layout(), io::SampleFolder::Layout::TensorFiles);
  ASSERT_EQ(folder.size(), 3u);
  EXPECT_EQ(floats(folder.load(0).at("x")), (std::vector<float>{7, 8}));
  EXPECT_EQ(floats(folder.load(1).at("x")), (std::vector<float>{1, 2}));
  EXPECT_EQ(folder.load(2).at("x").dims(), (Dims{2, 2}));
  EXPECT_EQ(folder.describe(), "3 tensor files in " + dir.string());
  fs::remove_all(dir);
}

TEST(SampleFolder, ImagesArePreprocessedForTheInput) {
  const fs::path dir = temp_dir("images");
  std::vector<uint8_t> red(3 * 5 * 3), grey(3 * 5, 255);
  for (size_t i = 0; i < red.size(); i += 3) red[i] = 255;
  write_png(dir / "b.png", 5, 3, PNG_COLOR_TYPE_RGB, 8, red);
  write_jpeg(dir / "a.jpg", 5, 3, 1, grey);
  // Default spec: resize to the static 4x6, /255, RGB, NCHW.
  io::SampleFolder folder(dir.string(), {image_input(Shape({Dim::named("N"), Dim(3), Dim(4), Dim(6)}))});
  EXPECT_EQ(folder.layout(), io::SampleFolder::Layout::Images);
  ASSERT_EQ(folder.size(), 2u);
  EXPECT_EQ(fs::path(folder.sample_path(0)).filename(), "a.jpg");
  Tensor b = folder.load(1).at("x");
  ASSERT_EQ(b.dims(), (Dims{1, 3, 4, 6}));
  for (int64_t i = 0; i < 24; ++i) {
    EXPECT_FLOAT_EQ(b.data<float>()[i], 1.0f);       // red plane
    EXPECT_FLOAT_EQ(b.data<float>()[24 + i], 0.0f);  // green plane
  }
  Tensor a = folder.load(0).at("x");
  for (float v : floats(a)) EXPECT_NEAR(v, 1.0f, 2.0f / 255.0f);
  EXPECT_EQ(folder.describe(), "2 images in " + dir.string() +
                                   " (preprocess: scale=1/255,mean=0:0:0,std=1:1:1,order=rgb,layout=nchw)");

  // An explicit spec: BGR, NHWC, native size for a dynamic input.
  io::SampleFolder nhwc(dir.string(), {image_input(Shape({Dim(1), Dim::named("H"), Dim::named("W"), Dim(3)}))},
                        io::Preprocess::parse("order=bgr,layout=nhwc,scale=1"));
  Tensor bn = nhwc.load(1).at("x");
  ASSERT_EQ(bn.dims(), (Dims{1, 3, 5, 3}));
  EXPECT_EQ(std::vector<float>(bn.data<float>(), bn.data<float>() + 3), (std::vector<float>{0, 0, 255}));
  fs::remove_all(dir);
}

TEST(SampleFolder, CountsWithoutReadingAndLoadsOneSampleAtATime) {
  const fs::path dir = temp_dir("lazy");
  const std::vector<io::ModelInput> input = {{"x", DType::Float32, Shape({Dim(2)})}};
  io::save_tensor_file(Tensor::from_vector<float>({1, 2}, {2}), "x", (dir / "0.npy").string());
  write_bytes(dir / "1.npy", "not numpy at all");
  io::save_tensor_file(Tensor::from_vector<float>({5, 6}, {2}), "x", (dir / "2.npy").string());
  // The broken file does not stop enumeration; it fails when its turn comes.
  io::SampleFolder folder(dir.string(), input);
  EXPECT_EQ(folder.size(), 3u);
  EXPECT_EQ(floats(folder.load(2).at("x")), (std::vector<float>{5, 6}));
  EXPECT_ERROR_CONTAINS(folder.load(1), (dir / "1.npy").string());
  EXPECT_ERROR_CONTAINS(folder.load(3), "sample 3 out of range");
  fs::remove_all(dir);
}

TEST(SampleFolder, FormalInputsLeaveOutInitializers) {
  ir::Graph g;
  ir::Value* x = g.value("x");
  x->type.dtype = DType::Float32;
  x->type.shape = Shape({Dim::named("N"), Dim(3), Dim(4), Dim(6)});
  ir::Value* w = g.value("w");
  w->type.dtype = DType::Float32;
  w->type.shape = Shape({Dim(3)});
  g.inputs = {x, w};
  g.initializers["w"] = Tensor::zeros(DType::Float32, {3});
  const auto inputs = io::formal_inputs(g);
  ASSERT_EQ(inputs.size(), 1u);
  EXPECT_EQ(inputs[0].name, "x");
  EXPECT_EQ(inputs[0].shape.str(), x->type.shape.str());

  const fs::path dir = temp_dir("graph");
  write_png(dir / "0.png", 1, 1, PNG_COLOR_TYPE_GRAY, 8, {0});
  io::SampleFolder folder(dir.string(), g);
  EXPECT_EQ(folder.load(0).at("x").dims(), (Dims{1, 3, 4, 6}));
  fs::remove_all(dir);
}

TEST(SampleFolder, ErrorsNameTheFolderOrFile) {
  const fs::path dir = temp_dir("errors");
  const auto one_input = std::vector<io::ModelInput>{{"x", DType::Float32, Shape({Dim::named("N"), Dim(2)})}};

  EXPECT_ERROR_CONTAINS(io::SampleFolder((dir / "nope").string(), one_input), "sample folder not found: " + (dir / "nope").string());
  write_bytes(dir / "file.txt", "x");
  EXPECT_ERROR_CONTAINS(io::SampleFolder((dir / "file.txt").string(), one_input), "not a directory: " + (dir / "file.txt").string());
  fs::create_directories(dir / "empty");
  write_bytes(dir / "empty/notes.txt", "no samples here");
  EXPECT_ERROR_CONTAINS(io::SampleFolder((dir / "empty").string(), one_input),
                        "no calibration samples in " + (dir / "empty").string() +
                            ": expected test_data_set_*/input_*.pb, .npy/.pb files or images");

  // Tensor contents that do not fit the input.
  const fs::path bad = dir / "bad";
  fs::create_directories(bad);
  io::save_tensor_file(Tensor::from_vector<int64_t>({1, 2}, {1, 2}), "", (bad / "a_dtype.npy").string());
  io::save_tensor_file(Tensor::from_vector<float>({1, 2}, {2}), "", (bad / "b_rank.npy").string());
  io::save_tensor_file(Tensor::from_vector<float>({1, 2, 3}, {1, 3}), "", (bad / "c_dim.npy").string());
  io::save_tensor_file(Tensor::from_vector<float>({1, std::nanf("")}, {1, 2}), "", (bad / "d_nan.npy").string());
  io::save_tensor_file(Tensor::from_vector<float>({-std::numeric_limits<float>::infinity(), 0}, {1, 2}), "",
                       (bad / "e_inf.pb").string());
  io::save_tensor_file(Tensor::from_vector<double>({0, std::nan("")}, {1, 2}), "", (bad / "f_nan64.npy").string());
  io::SampleFolder folder(bad.string(), {{"x", DType::Float32, Shape({Dim::named("N"), Dim(2)})}});
  ASSERT_EQ(folder.size(), 6u);
  EXPECT_ERROR_CONTAINS(folder.load(0), (bad / "a_dtype.npy").string() + ": input 'x' expects float32 Nx2, got int64 1x2");
  EXPECT_ERROR_CONTAINS(folder.load(1), (bad / "b_rank.npy").string() + ": input 'x' expects float32 Nx2, got float32 2");
  EXPECT_ERROR_CONTAINS(folder.load(2), (bad / "c_dim.npy").string() + ": input 'x' expects float32 Nx2, got float32 1x3");
  EXPECT_ERROR_CONTAINS(folder.load(3), "NaN in " + (bad / "d_nan.npy").string() + " (input 'x', element 1)");
  EXPECT_ERROR_CONTAINS(folder.load(4), "Inf in " + (bad / "e_inf.pb").string() + " (input 'x', element 0)");
  io::SampleFolder any_float(bad.string(), {{"x", DType::Undefined, Shape::unknown_rank()}});
  EXPECT_ERROR_CONTAINS(any_float.load(5), "NaN in " + (bad / "f_nan64.npy").string());

  // A test_data_set without one of the inputs, or with one too many.
  const fs::path sets = dir / "sets";
  write_set(sets / "test_data_set_0", 0.0f);
  write_set(sets / "test_data_set_1", 1.0f);
  fs::remove(sets / "test_data_set_1/input_1.pb");
  EXPECT_ERROR_CONTAINS(io::SampleFolder(sets.string(), two_inputs()),
                        (sets / "test_data_set_1").string() + " has no input_1.pb for input 'y'");
  EXPECT_ERROR_CONTAINS(io::SampleFolder((sets / "test_data_set_0").string(), one_input),
                        (sets / "test_data_set_0/input_1.pb").string() + ": the model takes only 1 input (x)");

  // Flat files feed one input only; a preprocess spec is for images.
  EXPECT_ERROR_CONTAINS(io::SampleFolder(bad.string(), two_inputs()),
                        bad.string() + " holds one tensor file per sample, which feeds a one-input model; the model has 2 inputs (x, y)");
  EXPECT_ERROR_CONTAINS(io::SampleFolder(bad.string(), one_input, io::Preprocess::parse("")),
                        "a preprocess spec applies to images; " + bad.string() + " holds tensor files");

  // Images: mixed with tensors, a spec that does not fit the input, a non-float input.
  const fs::path images = dir / "images";
  fs::create_directories(images);
  write_png(images / "0.png", 1, 1, PNG_COLOR_TYPE_GRAY, 8, {0});
  const Shape fixed({Dim(1), Dim(3), Dim(48), Dim(320)});
  EXPECT_ERROR_CONTAINS(io::SampleFolder(images.string(), {image_input(fixed)}, io::Preprocess::parse("resize=32x100")),
                        "preprocess spec 'resize=32x100,scale=1/255,mean=0:0:0,std=1:1:1,order=rgb,layout=nchw': input 'x' "
                        "expects float32 1x3x48x320, got float32 1x3x32x100");
  EXPECT_ERROR_CONTAINS(io::SampleFolder(images.string(), {image_input(fixed)}, io::Preprocess::parse("layout=nhwc")),
                        images.string() + ": preprocess: the input 1x3x48x320 has 320 channels in layout nhwc");
  EXPECT_ERROR_CONTAINS(io::SampleFolder(images.string(), {{"x", DType::UInt8, fixed}}),
                        images.string() + " holds images, which become float32 tensors; input 'x' is uint8");
  write_bytes(images / "broken.jpg", "");
  io::SampleFolder with_broken(images.string(), {image_input(fixed)});
  EXPECT_ERROR_CONTAINS(with_broken.load(1), (images / "broken.jpg").string() + ": not a PNG or JPEG image");
  io::save_tensor_file(Tensor::from_vector<float>({1, 2}, {1, 2}), "", (images / "t.npy").string());
  EXPECT_ERROR_CONTAINS(io::SampleFolder(images.string(), {image_input(fixed)}), images.string() + " mixes tensor files and images");
  fs::remove_all(dir);
}

// Training data from an image folder (train::load_image_folder): classes are the
// subfolders in name order; grey images keep their values (pixel / 255).
TEST(ImageFolder, ClassesInNameOrderAndGreyPixelsScaled) {
  const fs::path dir = fs::temp_directory_path() / ("duet_imgfolder_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  for (const char* c : {"b_dark", "a_light"}) fs::create_directories(dir / c);
  for (int i = 0; i < 3; ++i) {
    write_png(dir / "a_light" / ("img" + std::to_string(i) + ".png"), 4, 4, PNG_COLOR_TYPE_GRAY, 8,
              std::vector<uint8_t>(16, static_cast<uint8_t>(200 + i)));
    write_png(dir / "b_dark" / ("img" + std::to_string(i) + ".png"), 4, 4, PNG_COLOR_TYPE_GRAY, 8,
              std::vector<uint8_t>(16, static_cast<uint8_t>(10 + i)));
  }
  const train::Dataset d = train::load_image_folder(dir.string(), "resize=4x4", 1);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"a_light", "b_dark"}));
  EXPECT_EQ(d.features.dims(), (Dims{6, 1, 4, 4}));
  EXPECT_EQ(d.labels.data<int64_t>()[0], 0);
  EXPECT_EQ(d.labels.data<int64_t>()[5], 1);
  EXPECT_FLOAT_EQ(d.features.data<float>()[0], 200.0f / 255.0f);
  EXPECT_FLOAT_EQ(d.features.data<float>()[5 * 16], 12.0f / 255.0f);
  EXPECT_EQ(train::load_image_folder(dir.string(), "resize=2x3", 3).features.dims(), (Dims{6, 3, 2, 3}));
  std::ofstream(dir / "b_dark" / "broken.png") << "not a png";
  EXPECT_THROW(train::load_image_folder(dir.string(), "resize=4x4", 1), Error);
  EXPECT_THROW(train::load_image_folder((dir / "nope").string(), "", 1), Error);
  fs::remove_all(dir);
}

// ---- Writing files: never half of one (io/file.h) ----

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Files in `dir` other than `keep`: temporaries a writer left behind.
std::vector<std::string> others_in(const fs::path& dir, const std::string& keep) {
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().filename() != keep) names.push_back(e.path().filename().string());
  return names;
}

// Runs `write` in a child process whose files may not grow past `limit`
// bytes; `die` leaves SIGXFSZ at its default (the writer is killed mid-write)
// instead of ignored (the write fails with EFBIG). Returns the child's wait status.
template <typename F>
int write_limited(rlim_t limit, bool die, F&& write) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGXFSZ, die ? SIG_DFL : SIG_IGN);
    rlimit r{limit, limit};
    ::setrlimit(RLIMIT_FSIZE, &r);
    try {
      write();
    } catch (const Error& e) {
      std::string m = e.what();
      ::_exit(m.find("File too large") != std::string::npos ? 3 : 4);
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

}  // namespace

TEST(AtomicWrite, ReplacesTheFileWholeAndLeavesNothingBeside) {
  const fs::path dir = temp_dir("atomic");
  const fs::path p = dir / "out.bin";
  io::write_file_atomically(p.string(), "first", "file");
  io::write_file_atomically(p.string(), "second, longer", "file");
  EXPECT_EQ(read_all(p), "second, longer");
  EXPECT_TRUE(others_in(dir, "out.bin").empty());
  EXPECT_NE(error_of([&] { io::write_file_atomically(dir.string(), "x", "report"); }).find("not a regular file"), std::string::npos);
  EXPECT_NE(error_of([&] { io::write_file_atomically((dir / "no" / "x").string(), "x", "model"); })
                .find("cannot write the model"),
            std::string::npos);
}

TEST(AtomicWrite, ASizeLimitedOrKilledWriterLeavesThePreviousModelIntact) {
  const fs::path dir = temp_dir("atomic_limit");
  const fs::path p = dir / "model.onnx";
  ir::Model m;
  m.graph = std::make_unique<ir::Graph>();
  m.graph->initializers["w"] = Tensor::zeros(DType::Float32, {64, 1024});  // 256 KiB of weights
  onnx_io::save_model(m, p.string());
  const std::string before = read_all(p);
  ASSERT_GT(before.size(), 200000u);
  m.graph->initializers["w2"] = Tensor::zeros(DType::Float32, {64, 1024});
  // The write fails (EFBIG): one clear error, the old model in place, no temporary left.
  int status = write_limited(100000, false, [&] { onnx_io::save_model(m, p.string()); });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3) << "the error names the system's reason";
  EXPECT_EQ(read_all(p), before);
  EXPECT_TRUE(others_in(dir, "model.onnx").empty());
  // The writer is killed mid-write (SIGXFSZ): the old model is still whole.
  status = write_limited(100000, true, [&] { onnx_io::save_model(m, p.string()); });
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGXFSZ);
  EXPECT_EQ(read_all(p), before);
  // .npy tensors go the same way.
  const fs::path t = dir / "t.npy";
  io::save_npy(Tensor::zeros(DType::Float32, {4}), t.string());
  const std::string small = read_all(t);
  status = write_limited(1000, false, [&] { io::save_npy(Tensor::zeros(DType::Float32, {100000}), t.string()); });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_EQ(read_all(t), small);
}

// ---- Reading: what a careless or hostile input cannot do ----

TEST(Reading, FifosDevicesAndFoldersAreRefusedNotReadForever) {
  const fs::path dir = temp_dir("reading");
  const fs::path fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& path : {fifo.string(), std::string("/dev/zero")}) {
    EXPECT_NE(error_of([&] { io::load_tensor_file(path); }).find("not a regular file"), std::string::npos) << path;
    EXPECT_NE(error_of([&] { onnx_io::load_model(path); }).find("not a regular file"), std::string::npos) << path;
    EXPECT_NE(error_of([&] { io::load_image(path); }).find("not a regular file"), std::string::npos) << path;
  }
}

TEST(Reading, NpyHeadersAreParsedStrictlyAndCheckedAgainstTheFileBeforeAllocating) {
  const fs::path dir = temp_dir("npy_strict");
  auto npy = [&](const std::string& name, const std::string& shape, size_t payload) {
    std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
    h.append((64 - (10 + h.size() + 1) % 64) % 64, ' ');
    h += '\n';
    std::ofstream f(dir / name, std::ios::binary);
    f.write("\x93NUMPY\x01\x00", 8);
    f.put(char(h.size() & 0xFF)).put(char(h.size() >> 8));
    f << h << std::string(payload, '\0');
    return (dir / name).string();
  };
  EXPECT_EQ(io::load_npy(npy("ok.npy", "(2, 3)", 24)).dims(), (Dims{2, 3}));
  EXPECT_EQ(io::load_npy(npy("vec.npy", "(4,)", 16)).dims(), (Dims{4}));
  EXPECT_EQ(io::load_npy(npy("scalar.npy", "()", 4)).dims(), (Dims{}));
  EXPECT_NE(error_of([&] { io::load_npy(npy("neg.npy", "(-1, 4)", 16)); }).find("malformed .npy shape"), std::string::npos);
  EXPECT_NE(error_of([&] { io::load_npy(npy("space.npy", "(1 4)", 16)); }).find("separated by commas"), std::string::npos);
  // A 128-byte file claiming 2 GB: refused from the file's size, nothing allocated.
  EXPECT_NE(error_of([&] { io::load_npy(npy("claim.npy", "(1, 3, 48, 3640000)", 0)); }).find("truncated .npy data"),
            std::string::npos);
  EXPECT_NE(error_of([&] { io::load_npy(npy("short.npy", "(2, 3)", 20)); }).find("the file holds 20"), std::string::npos);
}

TEST(Reading, AnImageClaimingHugeDimensionsIsRefusedBeforeItsPixelsAreAllocated) {
  const fs::path dir = temp_dir("huge_png");
  // IHDR of 30000x30000 RGB and an empty IDAT: 69 bytes that would decode into 2.7 GB.
  auto be32 = [](uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; };
  auto chunk = [&](const std::string& type, const std::string& data) {
    const std::string body = type + data;
    return be32(uint32_t(data.size())) + body + be32(uint32_t(crc32(0, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()))));
  };
  const std::string ihdr = be32(30000) + be32(30000) + std::string{8, 2, 0, 0, 0};
  const std::string idat("\x78\x9c\x03\x00\x00\x00\x00\x01", 8);
  std::ofstream(dir / "huge.png", std::ios::binary) << std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", idat) + chunk("IEND", "");
  EXPECT_NE(error_of([&] { io::load_image((dir / "huge.png").string()); }).find("larger than 16384 a side"), std::string::npos);
}
