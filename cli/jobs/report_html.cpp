// report.html: one self-contained page (inline CSS and SVG, no script, no network) rendered from
// report.json.
#include <algorithm>
#include <cstdio>
#include <string>

#include "cli/jobs/report.h"

using nlohmann::json;

namespace ptq {
namespace {

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string text_value(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// Geometry shared by both plots: x is the layer's position in model order.
struct Frame {
  double width = 760, height = 240, left = 64, right = 16, top = 28, bottom = 40;
  double plot_w() const { return width - left - right; }
  double plot_h() const { return height - top - bottom; }
  double x(size_t i, size_t n) const { return left + plot_w() * (double(i) + 0.5) / double(n); }
  double y(double v, double vmax) const { return top + plot_h() * (1.0 - v / vmax); }
};

std::string axes(const Frame& f, const std::string& title, const std::string& y_label, double vmax,
                 size_t n, const char* tick_fmt) {
  std::string s;
  s += "<text class=\"title\" x=\"" + num("%.1f", f.left) + "\" y=\"18\">" + esc(title) + "</text>\n";
  s += "<line class=\"axis x-axis\" x1=\"" + num("%.1f", f.left) + "\" y1=\"" + num("%.1f", f.top + f.plot_h()) +
       "\" x2=\"" + num("%.1f", f.left + f.plot_w()) + "\" y2=\"" + num("%.1f", f.top + f.plot_h()) + "\"/>\n";
  s += "<line class=\"axis y-axis\" x1=\"" + num("%.1f", f.left) + "\" y1=\"" + num("%.1f", f.top) + "\" x2=\"" +
       num("%.1f", f.left) + "\" y2=\"" + num("%.1f", f.top + f.plot_h()) + "\"/>\n";
  for (int t = 0; t <= 4; ++t) {
    double v = vmax * t / 4.0, y = f.y(v, vmax);
    s += "<text class=\"tick\" x=\"" + num("%.1f", f.left - 6) + "\" y=\"" + num("%.1f", y + 4) +
         "\" text-anchor=\"end\">" + num(tick_fmt, v) + "</text>\n";
  }
  s += "<text class=\"label\" x=\"" + num("%.1f", f.left + f.plot_w() / 2) + "\" y=\"" +
       num("%.1f", f.height - 8) + "\" text-anchor=\"middle\">linear layer (model order, " +
       std::to_string(n) + " layers)</text>\n";
  s += "<text class=\"label\" transform=\"rotate(-90)\" x=\"" + num("%.1f", -(f.top + f.plot_h() / 2)) +
       "\" y=\"14\" text-anchor=\"middle\">" + esc(y_label) + "</text>\n";
  return s;
}

std::string svg_open(const Frame& f, const std::string& id) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"" + id + "\" width=\"" + num("%.0f", f.width) +
         "\" height=\"" + num("%.0f", f.height) + "\" viewBox=\"0 0 " + num("%.0f", f.width) + " " +
         num("%.0f", f.height) + "\">\n";
}

}  // namespace

std::string layer_plots_svg(const json& rep) {
  const json& layers = rep.at("layers");
  const size_t n = std::max<size_t>(layers.size(), 1);
  Frame f;
  double emax = 0, bmax = 0;
  for (const auto& l : layers) {
    emax = std::max(emax, l["rel_error"].get<double>());
    bmax = std::max(bmax, l["bits_per_weight"].get<double>());
  }
  emax = emax > 0 ? emax * 1.1 : 1.0;
  bmax = bmax > 0 ? bmax * 1.1 : 1.0;

  std::string err = svg_open(f, "rel-error-plot");
  err += axes(f, "Relative output error per layer", "relative error", emax, layers.size(), "%.3g");
  std::string bits = svg_open(f, "bits-plot");
  bits += axes(f, "Bits per weight per layer", "bits / weight", bmax, layers.size(), "%.1f");
  const double bar_w = std::max(1.0, f.plot_w() / double(n) * 0.7);
  for (size_t i = 0; i < layers.size(); ++i) {
    const json& l = layers[i];
    const std::string tip = "<title>" + esc(l["name"].get<std::string>()) + " (" + esc(l["spec"].get<std::string>()) +
                            ")</title>";
    double e = l["rel_error"], b = l["bits_per_weight"];
    err += "<circle class=\"layer\" cx=\"" + num("%.2f", f.x(i, n)) + "\" cy=\"" + num("%.2f", f.y(e, emax)) +
           "\" r=\"3\">" + tip + "</circle>\n";
    double top = f.y(b, bmax);
    bits += "<rect class=\"layer\" x=\"" + num("%.2f", f.x(i, n) - bar_w / 2) + "\" y=\"" + num("%.2f", top) +
            "\" width=\"" + num("%.2f", bar_w) + "\" height=\"" + num("%.2f", f.top + f.plot_h() - top) + "\">" +
            tip + "</rect>\n";
  }
  return err + "</svg>\n" + bits + "</svg>\n";
}

std::string report_html(const json& rep) {
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>ptq report: " +
      esc(rep["recipe"].get<std::string>()) +
      "</title>\n<style>\n"
      "body{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}\n"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}\n"
      "td.n{text-align:right;font-family:monospace}\n"
      "svg{display:block;margin:1em 0}svg .axis{stroke:#333}svg circle.layer{fill:#c33}\n"
      "svg rect.layer{fill:#36c}svg .tick,svg .label{font-size:11px}svg .title{font-size:13px;font-weight:bold}\n"
      "</style>\n</head>\n<body>\n";
  h += "<h1>ptq report</h1>\n<p>Recipe <code>" + esc(rep["recipe"].get<std::string>()) + "</code> on <code>" +
       esc(rep["model"]["path"].get<std::string>()) + "</code>, output <code>" +
       esc(rep["output"]["dir"].get<std::string>()) + "</code> (format " +
       esc(rep["output"]["format"].get<std::string>()) + "), job <code>" + esc(rep["job"].get<std::string>()) +
       "</code>.</p>\n";
  h += "<h2>Perplexity</h2>\n<table id=\"ppl\">\n<tr><th>dataset</th><th>protocol</th><th>seq_len</th>"
       "<th>sequences</th><th>fp ppl</th><th>quantized ppl</th><th>delta</th></tr>\n";
  for (const auto& e : rep["eval"]) {
    double fp = e["fp"]["ppl"], q = e["quantized"]["ppl"];
    h += "<tr><td>" + esc(e["data"].get<std::string>()) + "</td><td>" + esc(e["protocol"].get<std::string>()) +
         "</td><td class=\"n\">" + std::to_string(e["seq_len"].get<int>()) + "</td><td class=\"n\">" +
         std::to_string(e["fp"]["sequences"].get<int64_t>()) + "</td><td class=\"n\">" + num("%.4f", fp) +
         "</td><td class=\"n\">" + num("%.4f", q) + "</td><td class=\"n\">" + num("%+.4f", q - fp) + "</td></tr>\n";
  }
  h += "</table>\n<h2>Size</h2>\n<p>" + num("%.4f", rep["output"]["bits_per_weight"].get<double>()) +
       " bits per weight over the linear layers; checkpoint " +
       std::to_string(rep["output"]["bytes"].get<uint64_t>()) + " bytes.</p>\n<table>\n"
       "<tr><th>file</th><th>bytes</th><th>sha256</th></tr>\n";
  for (const auto& f : rep["output"]["files"])
    h += "<tr><td>" + esc(f["name"].get<std::string>()) + "</td><td class=\"n\">" +
         std::to_string(f["bytes"].get<uint64_t>()) + "</td><td class=\"n\">" + esc(f["sha256"].get<std::string>()) +
         "</td></tr>\n";
  h += "</table>\n<h2>Layers</h2>\n" + layer_plots_svg(rep);
  h += "<h2>Inputs</h2>\n<table>\n<tr><td>model sha256</td><td class=\"n\">" +
       esc(rep["model"]["sha256"].get<std::string>()) + "</td></tr>\n";
  for (const auto& [k, v] : rep["calibration"].items())
    h += "<tr><td>calibration " + esc(k) + "</td><td class=\"n\">" + esc(text_value(v)) + "</td></tr>\n";
  h += "<tr><td>seed</td><td class=\"n\">" + esc(rep["seed"].dump()) + "</td></tr>\n<tr><td>recipe</td><td class=\"n\">" +
       esc(rep["recipe"].get<std::string>()) + "</td></tr>\n</table>\n<h2>Environment</h2>\n<table>\n";
  for (const auto& [k, v] : rep["environment"].items())
    h += "<tr><td>" + esc(k) + "</td><td>" + esc(text_value(v)) + "</td></tr>\n";
  h += "</table>\n<h2>Time per stage</h2>\n<table>\n<tr><th>stage</th><th>seconds</th></tr>\n";
  for (const auto& t : rep["times"])
    h += "<tr><td>" + esc(t["stage"].get<std::string>()) + "</td><td class=\"n\">" +
         num("%.3f", t["seconds"].get<double>()) + "</td></tr>\n";
  return h + "</table>\n</body>\n</html>\n";
}

}  // namespace ptq
