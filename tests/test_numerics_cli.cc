// duet formats: listing and convert, text and JSON.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

using duet::testutil::cli;
using duet::testutil::run_command;

TEST(NumericsCli, FormatsListsPropertiesAsTextAndJson) {
  auto text = run_command(cli() + " formats");
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("e4m3fn"), std::string::npos);
  auto json = run_command(cli() + " formats --json --spec 'fp(1,5,10)'");
  ASSERT_EQ(json.exit_code, 0) << json.output;
  const auto out = nlohmann::json::parse(json.output);
  EXPECT_FALSE(out["duet"]["version"].get<std::string>().empty());  // every --json output says what produced it
  EXPECT_EQ(out["duet"]["options"]["--spec"], nlohmann::json::array({"fp(1,5,10)"}));  // a list option: always a list
  const auto& j = out["items"];
  bool found = false;
  for (const auto& f : j) {
    if (f["name"] == "e4m3fn") {
      found = true;
      EXPECT_EQ(f["max"], 448.0);
      EXPECT_EQ(f["bits"], 8);
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(j.back()["max"], 65504.0);
}

TEST(NumericsCli, ConvertShowsBitsAndDecodedValues) {
  auto r = run_command(cli() + " formats convert --to e4m3fn --json 0.1 300 1e-9");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  ASSERT_EQ(j["values"].size(), 3u);
  EXPECT_EQ(j["values"][0]["hex"], "0x1D");
  EXPECT_EQ(j["values"][0]["binary"], "0 0011 101");
  EXPECT_EQ(j["values"][0]["decoded"], 0.1015625);
  EXPECT_EQ(j["values"][1]["decoded"], 288.0);
  EXPECT_EQ(j["values"][2]["decoded"], 0.0);
  auto sat = run_command(cli() + " formats convert --to e4m3fn --overflow sat --rounding rtz -- -1000");
  ASSERT_EQ(sat.exit_code, 0) << sat.output;
  EXPECT_NE(sat.output.find("0xFE"), std::string::npos) << sat.output;
  auto bad = run_command(cli() + " formats convert --to e9m9x 1");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("unknown"), std::string::npos) << bad.output;
  EXPECT_EQ(run_command(cli() + " formats --help").exit_code, 0);
  EXPECT_EQ(run_command(cli() + " formats convert --help").exit_code, 0);
}
