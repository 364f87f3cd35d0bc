#pragma GCC diagnostic ignored "-Wrestrict"
#include <gtest/gtest.h>

#include "ptq/spec.h"
#include "ptq/error.h"

namespace ptq {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_recipe(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Spec, ParsesArgumentKinds) {
  Spec s = parse_spec("gptq(w4,g128,act_order,damp=0.01,g2=x)");
  EXPECT_EQ(s.name, "gptq");
  ASSERT_EQ(s.args.size(), 5u);
  EXPECT_EQ(s.args[0], (SpecArg{"w", "4"}));
  EXPECT_EQ(s.args[1], (SpecArg{"g", "128"}));
  EXPECT_EQ(s.args[2], (SpecArg{"act_order", ""}));
  EXPECT_EQ(s.args[3], (SpecArg{"damp", "0.01"}));
  EXPECT_EQ(s.args[4], (SpecArg{"g2", "x"}));
  EXPECT_EQ(parse_spec("g(g-1)").args[0], (SpecArg{"g", "-1"}));
}

TEST(Spec, PrintsCanonically) {
  EXPECT_EQ(parse_spec("awq").to_string(), "awq");
  EXPECT_EQ(parse_spec("awq()").to_string(), "awq");
  EXPECT_EQ(parse_spec(" gptq ( w4 , g = 128 , act_order ) ").to_string(), "gptq(w4,g128,act_order)");
  EXPECT_EQ(parse_spec("x(w=4.5,k=v,ab=3)").to_string(), "x(w=4.5,k=v,ab=3)");
  EXPECT_EQ(parse_spec("x(damp=1e-3,lr=2E+4)").to_string(), "x(damp=1e-3,lr=2E+4)");
}

TEST(Spec, ParsePrintParseIsIdentity) {
  for (const char* text : {"rtn", "gptq(w4,g128)", "gptq(w3,g0,act_order,damp=0.1,block=64)",
                           "rot(hadamard)+awq+gptq(w4,g128,act_order)", "a(g-1,x=y_z,flag)",
                           "smooth(alpha=0.5)+rtn(w8,g0,sym)", "n(v=-2,e=1e+3)"}) {
    std::vector<Spec> once = parse_recipe(text);
    std::string printed = recipe_to_string(once);
    EXPECT_EQ(parse_recipe(printed), once) << text;
    EXPECT_EQ(recipe_to_string(parse_recipe(printed)), printed) << text;
  }
}

TEST(Spec, RecipeSplitsOnPlus) {
  auto r = parse_recipe("rot(hadamard) + awq + gptq(w4, act_order)");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].name, "rot");
  EXPECT_EQ(r[2].to_string(), "gptq(w4,act_order)");
  EXPECT_EQ(recipe_to_string(r), "rot(hadamard)+awq+gptq(w4,act_order)");
}

TEST(Spec, ErrorsQuoteTextAndPosition) {
  std::string e = error_of("gptq(w4,,g128)");
  EXPECT_NE(e.find("'gptq(w4,,g128)'"), std::string::npos) << e;
  EXPECT_NE(e.find("position 8"), std::string::npos) << e;
  for (const char* bad : {"", "gptq(", "gptq(w4", "gptq(w4)x", "4bit", "a+", "+a", "a(b=)",
                          "a(w4,w4)", "a(w4,w=5)", "a(,)", "a)", "a(b c)"})
    EXPECT_NE(error_of(bad), "") << "'" << bad << "' should not parse";
  EXPECT_NE(error_of("a(w4,w4)").find("given twice"), std::string::npos);
  EXPECT_THROW(parse_spec("a+b"), Error);  // a single spec, not a recipe
}

TEST(Spec, TypedAccessorsAndUnusedArgs) {
  Spec s = parse_spec("q(w4,damp=0.25,on,name=abc)");
  EXPECT_EQ(s.int_value("w", 8), 4);
  EXPECT_EQ(s.int_value("missing", 8), 8);
  EXPECT_DOUBLE_EQ(s.double_value("damp", 0), 0.25);
  EXPECT_TRUE(s.flag("on"));
  EXPECT_FALSE(s.flag("off"));
  try {
    s.check_all_used();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'name'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.value("name"), "abc");
  EXPECT_NO_THROW(s.check_all_used());
  EXPECT_THROW(s.int_value("name", 0), Error);
  EXPECT_THROW(s.flag("w"), Error);  // has a value, is not a flag
  EXPECT_THROW(parse_spec("q(w=4x)").int_value("w", 0), Error);
  EXPECT_EQ(s, parse_spec("q(w4,damp=0.25,on,name=abc)"));  // bookkeeping is not identity
  EXPECT_TRUE(s.has("on"));
}

}  // namespace
}  // namespace ptq
