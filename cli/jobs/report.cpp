#include "cli/jobs/report.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "ptq/error.h"
#include "ptq/fs.h"
#include "ptq/json_read.h"
#include "ptq/sha256.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ptq {
namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

json eval_json(const EvalResult& r) {
  return {{"ppl", r.ppl}, {"mean_nll", r.mean_nll}, {"tokens", r.tokens}, {"sequences", r.sequences}};
}

json calibration_json(const JobSpec& job, const CompressResult& c) {
  if (!c.has_calibration) return {{"mode", "none"}};
  const CalibrationInfo& i = c.calibration;
  json j = {{"mode", job.compress.independent ? "independent" : "sequential"},
            {"data_path", i.data_path},
            {"data_sha256", i.data_sha256},
            {"sampler", i.sampler},
            {"seed", i.seed},
            {"samples", i.samples},
            {"seq_len", i.seq_len}};
  if (i.add_bos >= 0) j["add_bos"] = i.add_bos == 1;
  if (!job.compress.calib_file.empty()) {
    j["activations"] = job.compress.calib_file;
    j["activations_sha256"] = c.calib_file_sha256;
  }
  return j;
}

// Weighted by parameter count: the average a reader would compute from the checkpoint.
double total_bits_per_weight(const std::vector<LayerResult>& layers) {
  double bits = 0, params = 0;
  for (const auto& l : layers) {
    double n = double(l.rows) * double(l.cols);
    bits += l.bits_per_weight * n;
    params += n;
  }
  return params > 0 ? bits / params : 0;
}

}  // namespace

std::vector<OutputFile> list_output_files(const std::string& dir) {
  std::vector<OutputFile> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    files.push_back({fs::relative(e.path(), dir).string(), uint64_t(e.file_size()),
                     sha256_file_hex(e.path().string())});
  }
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return files;
}

json report_to_json(const JobReport& r) {
  PTQ_ASSERT(r.job && r.compress, "a report needs its job and compression result");
  const JobSpec& job = *r.job;
  const CompressResult& c = *r.compress;
  json layers = json::array();
  for (const auto& l : c.layers)
    layers.push_back({{"name", l.name}, {"layer", l.layer}, {"rows", l.rows}, {"cols", l.cols},
                      {"spec", l.spec}, {"skipped", l.skipped}, {"rel_error", l.rel_error},
                      {"bits_per_weight", l.bits_per_weight}, {"sparse_share", l.sparse_share}, {"log", l.log}});
  json evals = json::array();
  for (const auto& e : r.evals)
    evals.push_back({{"data", e.dataset.path}, {"protocol", data_format_name(e.dataset.format)},
                     {"seq_len", e.seq_len}, {"max_samples", e.dataset.max_samples},
                     {"add_bos", e.add_bos}, {"tokenizer", e.tokenizer},
                     {"fp", eval_json(e.fp)}, {"quantized", eval_json(e.quantized)}});
  json files = json::array();
  uint64_t total = 0;
  for (const auto& f : r.files) {
    files.push_back({{"name", f.name}, {"bytes", f.bytes}, {"sha256", f.sha256}});
    total += f.bytes;
  }
  json times = json::array();
  for (const auto& t : r.times) times.push_back({{"stage", t.stage}, {"seconds", t.seconds}});
  return {{"ptq_report", 1},
          {"job", job.source},
          {"recipe", c.recipe},
          {"seed", job.compress.has_calib_request ? c.calibration.seed : 0},
          {"model", {{"path", job.compress.model_path}, {"sha256", c.model_sha256}}},
          {"calibration", calibration_json(job, c)},
          {"output",
           {{"dir", job.compress.out_dir}, {"format", job.compress.format}, {"files", files},
            {"bytes", total}, {"bits_per_weight", total_bits_per_weight(c.layers)}}},
          {"layers", layers},
          {"eval", evals},
          {"environment", environment_json(r.threads)},
          {"times", times}};
}

std::string ppl_table_text(const json& rep) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-48s %-12s %7s %10s %10s %8s\n", "dataset", "protocol", "seq_len",
                "fp ppl", "quant ppl", "delta");
  out += line;
  for (const auto& e : rep.at("eval")) {
    double fp = e["fp"]["ppl"], q = e["quantized"]["ppl"];
    std::snprintf(line, sizeof line, "%-48s %-12s %7d %10.4f %10.4f %+8.4f\n",
                  e["data"].get<std::string>().c_str(), e["protocol"].get<std::string>().c_str(),
                  e["seq_len"].get<int>(), fp, q, q - fp);
    out += line;
  }
  std::snprintf(line, sizeof line, "recipe %s, %.3f bits/weight, checkpoint %.1f KiB\n",
                rep.at("recipe").get<std::string>().c_str(),
                rep["output"]["bits_per_weight"].get<double>(),
                double(rep["output"]["bytes"].get<uint64_t>()) / 1024.0);
  return out + line;
}

std::string report_markdown(const json& rep) {
  std::string md = "# ptq report: " + rep.at("recipe").get<std::string>() + "\n\n";
  md += "Job `" + rep["job"].get<std::string>() + "`, model `" + rep["model"]["path"].get<std::string>() +
        "`, output `" + rep["output"]["dir"].get<std::string>() + "` (format " +
        rep["output"]["format"].get<std::string>() + ").\n\n";
  md += "## Perplexity\n\n| dataset | protocol | BOS | seq_len | sequences | fp ppl | quantized ppl | delta |\n"
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& e : rep["eval"]) {
    double fp = e["fp"]["ppl"], q = e["quantized"]["ppl"];
    const std::string bos = !e.contains("add_bos") ? "?" : e["add_bos"].get<bool>() ? "yes" : "no";
    md += "| " + e["data"].get<std::string>() + " | " + e["protocol"].get<std::string>() + " | " + bos + " | " +
          std::to_string(e["seq_len"].get<int>()) + " | " +
          std::to_string(e["fp"]["sequences"].get<int64_t>()) + " | " + fmt("%.4f", fp) + " | " +
          fmt("%.4f", q) + " | " + fmt("%+.4f", q - fp) + " |\n";
  }
  md += "\n## Size\n\n- bits per weight (linear layers): " +
        fmt("%.4f", rep["output"]["bits_per_weight"].get<double>()) + "\n- checkpoint: " +
        std::to_string(rep["output"]["bytes"].get<uint64_t>()) + " bytes\n";
  for (const auto& f : rep["output"]["files"])
    md += "  - `" + f["name"].get<std::string>() + "` " + std::to_string(f["bytes"].get<uint64_t>()) +
          " bytes, sha256 " + f["sha256"].get<std::string>() + "\n";
  md += "\n## Layers\n\n| layer | spec | rel. error | bits/weight |\n| --- | --- | ---: | ---: |\n";
  for (const auto& l : rep["layers"])
    md += "| " + l["name"].get<std::string>() + " | " + l["spec"].get<std::string>() + " | " +
          fmt("%.6g", l["rel_error"].get<double>()) + " | " + fmt("%.3f", l["bits_per_weight"].get<double>()) +
          " |\n";
  md += "\n## Inputs\n\n- model sha256: " + rep["model"]["sha256"].get<std::string>() + "\n";
  for (const auto& [k, v] : rep["calibration"].items())
    md += "- calibration " + k + ": " + (v.is_string() ? v.get<std::string>() : v.dump()) + "\n";
  md += "- seed: " + rep["seed"].dump() + "\n- recipe: `" + rep["recipe"].get<std::string>() + "`\n";
  md += "\n## Environment\n\n";
  for (const auto& [k, v] : rep["environment"].items())
    md += "- " + k + ": " + (v.is_string() ? v.get<std::string>() : v.dump()) + "\n";
  md += "\n## Time per stage (not reproducible)\n\n| stage | seconds |\n| --- | ---: |\n";
  for (const auto& t : rep["times"])
    md += "| " + t["stage"].get<std::string>() + " | " + fmt("%.3f", t["seconds"].get<double>()) + " |\n";
  return md;
}

void write_report(const std::string& dir, const json& rep) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create the report directory: " + ec.message());
  write_file_atomic((fs::path(dir) / "report.json").string(), rep.dump(2) + "\n");
  write_file_atomic((fs::path(dir) / "report.md").string(), report_markdown(rep));
  write_file_atomic((fs::path(dir) / "report.html").string(), report_html(rep));
}

json read_report(const std::string& path) {
  const json j = read_json_file(path);
  if (!j.is_object() || !j.contains("ptq_report"))
    throw Error(path + ": not a ptq report (no \"ptq_report\" key)");
  return j;
}

namespace {

// Rows of a comparison: label -> value text, in display order.
std::vector<std::pair<std::string, std::string>> summary_rows(const json& r) {
  std::vector<std::pair<std::string, std::string>> rows;
  rows.push_back({"recipe", r.value("recipe", "")});
  rows.push_back({"output format", r["output"].value("format", "")});
  rows.push_back({"bits/weight", fmt("%.4f", r["output"].value("bits_per_weight", 0.0))});
  rows.push_back({"checkpoint bytes", std::to_string(r["output"].value("bytes", uint64_t(0)))});
  rows.push_back({"calibration seed", r["seed"].dump()});
  double err = 0;
  for (const auto& l : r["layers"]) err += l.value("rel_error", 0.0);
  if (!r["layers"].empty()) err /= double(r["layers"].size());
  rows.push_back({"mean layer rel. error", fmt("%.6g", err)});
  for (const auto& e : r["eval"]) {
    std::string key = fs::path(e.value("data", "")).filename().string() + " (" + e.value("protocol", "") + ", " +
                      std::to_string(e.value("seq_len", 0)) + ")";
    rows.push_back({"fp ppl " + key, fmt("%.4f", e["fp"].value("ppl", 0.0))});
    rows.push_back({"quant ppl " + key, fmt("%.4f", e["quantized"].value("ppl", 0.0))});
  }
  for (const auto& t : r["times"])
    rows.push_back({"time " + t.value("stage", "") + " (s)", fmt("%.2f", t.value("seconds", 0.0))});
  return rows;
}

}  // namespace

std::string compare_reports_text(const json& a, const std::string& a_name, const json& b,
                                 const std::string& b_name) {
  auto ra = summary_rows(a), rb = summary_rows(b);
  // Rows in A's order, then rows only B has.
  std::vector<std::string> labels;
  std::map<std::string, std::string> va, vb;
  for (const auto& [k, v] : ra) {
    labels.push_back(k);
    va[k] = v;
  }
  for (const auto& [k, v] : rb) {
    if (!va.count(k)) labels.push_back(k);
    vb[k] = v;
  }
  size_t w = 10, wa = std::max<size_t>(a_name.size(), 12);
  for (const auto& l : labels) w = std::max(w, l.size());
  for (const auto& [k, v] : va) wa = std::max(wa, v.size());
  auto row = [&](const std::string& label, const std::string& x, const std::string& y, bool mark) {
    std::string r = label + std::string(w - label.size() + 2, ' ') + x + std::string(wa - x.size() + 2, ' ') + y;
    return r + (mark ? "  *\n" : "\n");
  };
  std::string out = row("", a_name, b_name, false);
  for (const auto& l : labels) {
    std::string x = va.count(l) ? va[l] : "-", y = vb.count(l) ? vb[l] : "-";
    out += row(l, x, y, x != y);
  }
  return out;
}

}  // namespace ptq
