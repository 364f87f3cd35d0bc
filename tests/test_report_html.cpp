// The HTML report renders: with headless Chromium when the machine has it (the DOM it builds
// holds the plots), and always a structural parse of the page and its SVG plots.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "ptq/fs.h"
#include "cli/jobs/report.h"
#include "support/shared_data.h"

using nlohmann::json;

namespace ptq {
namespace {

json sample_report(int layers) {
  json ls = json::array();
  for (int i = 0; i < layers; ++i)
    ls.push_back({{"name", "model.layers." + std::to_string(i / 7) + ".mlp.x<" + std::to_string(i) + ">"},
                  {"layer", i / 7}, {"rows", 64}, {"cols", 64}, {"spec", "gptq(w4,g32)"}, {"skipped", false},
                  {"rel_error", 0.001 * (i + 1)}, {"bits_per_weight", i % 5 == 0 ? 8.5 : 4.5}});
  return {{"ptq_report", 1},
          {"job", "job & co.yaml"},
          {"recipe", "gptq(w4,g32)"},
          {"seed", 0},
          {"model", {{"path", "m"}, {"sha256", std::string(64, 'a')}}},
          {"calibration", {{"mode", "sequential"}, {"seed", 0}}},
          {"output", {{"dir", "o"}, {"format", "fake"}, {"files", json::array()}, {"bytes", 1234},
                      {"bits_per_weight", 4.6}}},
          {"layers", ls},
          {"eval", json::array({{{"data", "d.txt"}, {"protocol", "tinystories"}, {"add_bos", true}, {"seq_len", 128},
                                 {"max_samples", 8},
                                 {"fp", {{"ppl", 4.0}, {"mean_nll", 1.38}, {"tokens", 10}, {"sequences", 2}}},
                                 {"quantized", {{"ppl", 4.2}, {"mean_nll", 1.43}, {"tokens", 10}, {"sequences", 2}}}}})},
          {"environment", {{"ptq_version", "0.1.0"}, {"threads", 2}}},
          {"times", json::array({{{"stage", "quantize"}, {"seconds", 1.5}}})}};
}

struct Element {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::string parent;
};

// A small XML reader for our own output: elements with quoted attributes, text, <!DOCTYPE>.
// Fails the test on mismatched or unclosed tags.
std::vector<Element> parse_xml(const std::string& text) {
  std::vector<Element> out;
  std::vector<std::string> stack;
  size_t p = 0;
  while ((p = text.find('<', p)) != std::string::npos) {
    size_t end = text.find('>', p);
    EXPECT_NE(end, std::string::npos) << "unterminated tag at " << p;
    if (end == std::string::npos) break;
    std::string tag = text.substr(p + 1, end - p - 1);
    p = end + 1;
    if (tag.empty() || tag[0] == '!') continue;
    if (tag[0] == '/') {
      EXPECT_FALSE(stack.empty()) << "stray </" << tag << ">";
      if (stack.empty()) break;
      EXPECT_EQ(stack.back(), tag.substr(1)) << "mismatched close tag";
      stack.pop_back();
      continue;
    }
    bool self_closing = tag.back() == '/';
    if (self_closing) tag.pop_back();
    std::istringstream in(tag);
    Element e;
    in >> e.name;
    e.parent = stack.empty() ? "" : stack.back();
    size_t q = e.name.size();
    while ((q = tag.find('=', q)) != std::string::npos) {
      size_t k = tag.rfind(' ', q);
      std::string key = tag.substr(k + 1, q - k - 1);
      size_t v0 = tag.find('"', q), v1 = tag.find('"', v0 + 1);
      EXPECT_TRUE(v0 == q + 1 && v1 != std::string::npos) << "unquoted attribute in <" << tag << ">";
      if (v1 == std::string::npos) break;
      e.attrs[key] = tag.substr(v0 + 1, v1 - v0 - 1);
      q = v1;
    }
    const bool is_void = e.name == "meta" || e.name == "br";
    if (!self_closing && !is_void) stack.push_back(e.name);
    out.push_back(e);
  }
  EXPECT_TRUE(stack.empty()) << "unclosed <" << (stack.empty() ? "" : stack.back()) << ">";
  return out;
}

size_t count(const std::vector<Element>& es, const std::string& name, const std::string& cls = "") {
  size_t n = 0;
  for (const auto& e : es)
    if (e.name == name &&
        (cls.empty() || (e.attrs.count("class") && e.attrs.at("class").find(cls) != std::string::npos)))
      ++n;
  return n;
}

TEST(ReportHtml, StructureOfThePageAndPlots) {
  const int layers = 35;
  json rep = sample_report(layers);
  std::string html = report_html(rep);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // only the SVG namespace
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_NE(html.find("job &amp; co.yaml"), std::string::npos);
  std::vector<Element> es = parse_xml(html);
  EXPECT_EQ(count(es, "svg"), 2u);
  EXPECT_EQ(count(es, "circle", "layer"), size_t(layers));  // relative error, one per layer
  EXPECT_EQ(count(es, "rect", "layer"), size_t(layers));    // bits per weight, one per layer
  EXPECT_EQ(count(es, "line", "x-axis"), 2u);
  EXPECT_EQ(count(es, "line", "y-axis"), 2u);
  EXPECT_GE(count(es, "text", "label"), 4u);
  EXPECT_GE(count(es, "text", "tick"), 10u);
  // Every mark lies inside its plot, and the bars' heights follow the bits.
  for (const auto& e : es) {
    if (e.name == "circle" && e.attrs.count("cy")) {
      double cy = std::stod(e.attrs.at("cy"));
      EXPECT_GE(cy, 0.0);
      EXPECT_LE(cy, 240.0);
    }
  }
  double tall = 0, short_ = 1e9;
  for (const auto& e : es)
    if (e.name == "rect" && e.attrs.count("height")) {
      tall = std::max(tall, std::stod(e.attrs.at("height")));
      short_ = std::min(short_, std::stod(e.attrs.at("height")));
    }
  EXPECT_NEAR(tall / short_, 8.5 / 4.5, 1e-3);
  EXPECT_GE(count(es, "table"), 4u);
}

std::string chromium_binary() {
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    std::string cmd = std::string("command -v ") + name + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return name;
  }
  return "";
}

TEST(ReportHtml, RendersInHeadlessChromiumWhenPresent) {
  const std::string chromium = chromium_binary();
  if (chromium.empty()) GTEST_SKIP() << "no chromium on this machine; the structural check above ran instead";
  std::string dir = test::temp_dir("report_html_chromium");
  write_report(dir, sample_report(12));
  std::string dom = dir + "/dom.html";
  std::string cmd = chromium + " --headless --no-sandbox --disable-gpu --dump-dom file://" + dir +
                    "/report.html >" + dom + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::string text = read_text_file(dom);
  size_t circles = 0;
  for (size_t p = 0; (p = text.find("<circle", p)) != std::string::npos; ++p) ++circles;
  EXPECT_EQ(circles, 12u);
  EXPECT_NE(text.find("Perplexity"), std::string::npos);
}

TEST(ReportMarkdown, TablesAndCompare) {
  json a = sample_report(7), b = sample_report(7);
  b["recipe"] = "rtn(w3,g32)";
  b["eval"][0]["quantized"]["ppl"] = 5.0;
  std::string md = report_markdown(a);
  EXPECT_NE(md.find("| d.txt | tinystories | yes | 128 | 2 | 4.0000 | 4.2000 | +0.2000 |"), std::string::npos) << md;
  a["eval"][0]["add_bos"] = false;  // SmolLM2-style tokenizers add none
  EXPECT_NE(report_markdown(a).find("| d.txt | tinystories | no | 128 |"), std::string::npos);
  a["eval"][0].erase("add_bos");  // reports written before the field existed
  EXPECT_NE(report_markdown(a).find("| d.txt | tinystories | ? | 128 |"), std::string::npos);
  a["eval"][0]["add_bos"] = true;
  std::string cmp = compare_reports_text(a, "A", b, "B");
  EXPECT_NE(cmp.find("rtn(w3,g32)"), std::string::npos) << cmp;
  // The changed ppl row is marked, the unchanged fp row is not.
  std::istringstream lines(cmp);
  std::string line;
  bool quant_marked = false, fp_marked = true;
  while (std::getline(lines, line)) {
    if (line.rfind("quant ppl", 0) == 0) quant_marked = line.size() > 2 && line.substr(line.size() - 1) == "*";
    if (line.rfind("fp ppl", 0) == 0) fp_marked = line.substr(line.size() - 1) == "*";
  }
  EXPECT_TRUE(quant_marked) << cmp;
  EXPECT_FALSE(fp_marked) << cmp;
}

}  // namespace
}  // namespace ptq
