#include <gtest/gtest.h>

#include "duet/core/tensor.h"
#include "duet/ir/graph.h"

using namespace duet;

TEST(DType, NamesRoundTripAndOnnxSpellingsAreAccepted) {
  for (int code = 1; code <= kMaxDType; ++code) {
    const DType t = static_cast<DType>(code);
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t) << code;
  }
  EXPECT_EQ(dtype_from_name("FLOAT"), DType::Float32);
  EXPECT_EQ(dtype_from_name("bf16"), DType::BFloat16);
  EXPECT_THROW(dtype_from_name("float7"), Error);
}

TEST(DType, StorageBytesRefuseCountsBeyondSixtyFourBits) {
  EXPECT_EQ(dtype_storage_bytes(DType::Int4, 3), 2u);
  EXPECT_EQ(dtype_storage_bytes(DType::Float32, int64_t{1} << 40), size_t{1} << 42);
  // 427832823819238141 float32 values: a shape the fuzzer declared; one clear error, not an overflow.
  EXPECT_THROW(dtype_storage_bytes(DType::Float32, 427832823819238141), Error);
}

TEST(Tensor, Int4PacksTwoPerByteLowNibbleFirst) {
  Tensor t(DType::Int4, {3});
  subbyte_set(t, 0, -8);
  subbyte_set(t, 1, 7);
  subbyte_set(t, 2, -1);
  EXPECT_EQ(t.nbytes(), 2u);
  EXPECT_EQ(t.data<uint8_t>()[0], 0x78);
  EXPECT_EQ(subbyte_get(t, 0), -8);
  EXPECT_EQ(subbyte_get(t, 1), 7);
  EXPECT_EQ(subbyte_get(t, 2), -1);
}

TEST(Tensor, StorageIs64ByteAlignedAndReshapeSharesIt) {
  Tensor t(DType::Float32, {2, 3});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  Tensor r = t.reshaped({3, 2});
  EXPECT_EQ(r.raw(), t.raw());
  EXPECT_THROW(t.reshaped({4}), Error);
}

TEST(Shape, ParsesDimsAndRejectsGarbage) {
  EXPECT_EQ(parse_dims("1x3x640x640"), (Dims{1, 3, 640, 640}));
  EXPECT_EQ(parse_dims("scalar"), Dims{});
  EXPECT_THROW(parse_dims("1xx3"), Error);
  EXPECT_THROW(parse_dims("1x-3"), Error);
}

TEST(Shape, ElementCountsThatOverflowAreOneClearErrorNotAWrappedCount) {
  // 2^32 x 2^32 elements wrapped to 0 and 2^58 x 64 to 0: kernels then read
  // past buffers or divided by zero.
  EXPECT_THROW(numel({1, 1, int64_t(1) << 32, int64_t(1) << 32}), Error);
  EXPECT_THROW(Tensor(DType::Float32, {int64_t(1) << 58, 1, 8, 8}), Error);
  EXPECT_THROW(Tensor(DType::Float32, {int64_t(1) << 40, int64_t(1) << 20}), Error);  // 2^60 floats: more than a petabyte
  EXPECT_EQ(numel({0, int64_t(1) << 62, 4}), 0);  // an empty batch of anything is empty
  EXPECT_EQ(numel({3, 4}), 12);
}

TEST(Verifier, AGraphInputOrOutputListedTwiceIsRefused) {
  ir::Graph g;
  ir::Value* x = g.value("x");
  g.inputs = {x, x};
  g.add_node("Relu", {x}, {g.value("y")});
  g.outputs = {g.value("y")};
  EXPECT_THROW(ir::verify(g), Error);
  g.inputs = {x};
  ir::verify(g);
  g.outputs = {g.value("y"), g.value("y")};
  EXPECT_THROW(ir::verify(g), Error);
}

TEST(Verifier, NamesTheFirstNodeThatUsesAnUndefinedValue) {
  ir::Graph g;
  ir::Value* x = g.value("x");
  g.inputs.push_back(x);
  g.add_node("Relu", {x}, {g.value("y")}, "first");
  g.add_node("Add", {g.value("y"), g.value("missing")}, {g.value("z")}, "second");
  g.outputs.push_back(g.value("z"));
  try {
    ir::verify(g);
    FAIL() << "verify accepted an undefined input";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'second'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
}

TEST(Verifier, TopologicalSortRestoresOrder) {
  ir::Graph g;
  ir::Value* x = g.value("x");
  g.inputs.push_back(x);
  g.add_node("Relu", {g.value("y")}, {g.value("z")}, "second");
  g.add_node("Relu", {x}, {g.value("y")}, "first");
  g.outputs.push_back(g.value("z"));
  EXPECT_THROW(ir::verify(g), Error);
  g.topological_sort();
  EXPECT_EQ(g.nodes[0]->name, "first");
  EXPECT_NO_THROW(ir::verify(g));
}
