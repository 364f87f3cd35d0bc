#include "cli/jobs/job_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <regex>

#include "ptq/stages.h"
#include "formats/checkpoint_writer.h"
#include "ptq/error.h"
#include "ptq/fs.h"

namespace ptq {
namespace {

// Reads nodes of one YAML text; every failure names source:line:column.
class YamlReader {
 public:
  explicit YamlReader(std::string source) : source_(std::move(source)) {}

  std::string where(const YAML::Node& n) const {
    const YAML::Mark m = n.Mark();
    if (m.is_null()) return source_;
    return source_ + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  }
  [[noreturn]] void fail(const YAML::Node& n, const std::string& what) const {
    throw Error(where(n) + ": " + what);
  }

  void expect_map(const YAML::Node& n, const std::string& what) const {
    if (!n.IsMap()) fail(n, "'" + what + "' must be a mapping of keys to values");
  }
  void expect_list(const YAML::Node& n, const std::string& what) const {
    if (!n.IsSequence()) fail(n, "'" + what + "' must be a list");
  }
  // yaml-cpp keeps both entries of a repeated key and n[key] answers the first, while JSON
  // readers keep the last: a repeated key is refused so no reader can disagree with another.
  void check_unique_keys(const YAML::Node& map, const std::string& section) const {
    std::map<std::string, YAML::Node> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      auto [prev, inserted] = seen.emplace(it->first.Scalar(), it->first);
      if (!inserted)
        fail(it->first, "duplicate key '" + it->first.Scalar() + "' in " + section + " (first at " +
                            where(prev->second) + ")");
    }
  }
  // Unknown keys are errors, so a misspelt option never silently falls back to its default.
  void check_keys(const YAML::Node& map, const std::string& section,
                  const std::vector<std::string>& allowed) const {
    check_unique_keys(map, section);
    for (auto it = map.begin(); it != map.end(); ++it) {
      const std::string key = it->first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail(it->first, "unknown key '" + key + "' in " + section + " (expected one of: " + list + ")");
    }
  }

  std::string str(const YAML::Node& n, const std::string& what) const {
    if (!n.IsScalar()) fail(n, "'" + what + "' must be a string");
    return n.Scalar();
  }
  int integer(const YAML::Node& n, const std::string& what) const {
    if (!n.IsScalar()) fail(n, "'" + what + "' must be an integer");
    try {
      return n.as<int>();
    } catch (const YAML::Exception&) {
      fail(n, "'" + what + "' must be an integer, got '" + n.Scalar() + "'");
    }
  }
  uint64_t unsigned_integer(const YAML::Node& n, const std::string& what) const {
    if (!n.IsScalar() || n.Scalar().empty() || n.Scalar()[0] == '-')
      fail(n, "'" + what + "' must be a non-negative integer");
    try {
      return n.as<uint64_t>();
    } catch (const YAML::Exception&) {
      fail(n, "'" + what + "' must be a non-negative integer, got '" + n.Scalar() + "'");
    }
  }
  bool boolean(const YAML::Node& n, const std::string& what) const {
    if (!n.IsScalar()) fail(n, "'" + what + "' must be true or false");
    try {
      return n.as<bool>();
    } catch (const YAML::Exception&) {
      fail(n, "'" + what + "' must be true or false, got '" + n.Scalar() + "'");
    }
  }
  int positive(const YAML::Node& n, const std::string& what) const {
    int v = integer(n, what);
    if (v <= 0) fail(n, "'" + what + "' must be positive, got " + std::to_string(v));
    return v;
  }
  DataFormat data_format(const YAML::Node& n, const std::string& what) const {
    try {
      return parse_data_format(str(n, what));
    } catch (const Error& e) {
      fail(n, e.what());
    }
  }

 private:
  std::string source_;
};

// One stage of the list form: `name`, `"name(args)"`, or `name: {key: value, ...}`.
Spec stage_from_node(const YamlReader& y, const YAML::Node& n) {
  if (n.IsScalar()) {
    try {
      return parse_spec(n.Scalar());
    } catch (const Error& e) {
      y.fail(n, e.what());
    }
  }
  if (!n.IsMap() || n.size() != 1)
    y.fail(n, "a recipe stage is `name`, `\"name(args)\"` or `name: {key: value, ...}`");
  auto entry = n.begin();
  Spec s;
  s.name = entry->first.Scalar();
  const YAML::Node args = entry->second;
  if (args.IsNull()) return s;
  y.expect_map(args, s.name);
  y.check_unique_keys(args, "the arguments of '" + s.name + "'");
  std::vector<SpecArg> leading, rest;
  for (auto it = args.begin(); it != args.end(); ++it) {
    const std::string key = it->first.Scalar();
    const YAML::Node v = it->second;
    if (key == "bits" || key == "group_size") {
      leading.push_back({key == "bits" ? "w" : "g", std::to_string(y.integer(v, s.name + "." + key))});
    } else if (!v.IsScalar()) {
      y.fail(v, "'" + s.name + "." + key + "' must be a scalar (number, flag or word)");
    } else if (v.Tag() != "!" && (v.Scalar() == "true" || v.Scalar() == "false")) {
      if (y.boolean(v, key)) rest.push_back({key, ""});
    } else {
      rest.push_back({key, v.Scalar()});
    }
  }
  std::stable_sort(leading.begin(), leading.end(),
                   [](const SpecArg& a, const SpecArg& b) { return a.key == "w" && b.key != "w"; });
  s.args = leading;
  s.args.insert(s.args.end(), rest.begin(), rest.end());
  return s;
}

std::vector<Spec> parse_recipe_node(const YamlReader& y, const YAML::Node& n) {
  std::vector<Spec> recipe;
  if (n.IsScalar()) {
    try {
      recipe = parse_recipe(n.Scalar());
    } catch (const Error& e) {
      y.fail(n, e.what());
    }
  } else {
    y.expect_list(n, "recipe");
    for (const auto& stage : n) recipe.push_back(stage_from_node(y, stage));
  }
  if (recipe.empty()) y.fail(n, "the recipe has no stage");
  // Transforms, one quantizer, then refiners; each must be a registered algorithm with valid args.
  for (size_t i = 0; i < recipe.size(); ++i) {
    const YAML::Node at = n.IsSequence() ? n[i] : n;
    try {
      known_stage_role(recipe[i].name);
    } catch (const Error& e) {
      y.fail(at, e.what());
    }
  }
  try {
    split_recipe(recipe);
  } catch (const Error& e) {
    y.fail(n, e.what());
  }
  for (size_t i = 0; i < recipe.size(); ++i) {
    const YAML::Node at = n.IsSequence() ? n[i] : n;
    const StageRole role = *stage_role(recipe[i].name);
    try {
      if (role == StageRole::kTransform) make_transform(recipe[i]);
      else if (role == StageRole::kQuantizer) make_quantizer(recipe[i]);
      else make_refiner(recipe[i]);
    } catch (const Error& e) {
      y.fail(at, std::string(stage_role_name(role)) + " stage: " + e.what());
    }
  }
  return recipe;
}

void parse_model(const YamlReader& y, const YAML::Node& n, JobSpec& job) {
  y.expect_map(n, "model");
  y.check_keys(n, "model", {"path", "tokenizer"});
  if (!n["path"]) y.fail(n, "model needs 'path' (HF directory or llama2.c .bin)");
  job.compress.model_path = y.str(n["path"], "model.path");
  if (n["tokenizer"]) job.compress.tokenizer = y.str(n["tokenizer"], "model.tokenizer");
}

void parse_calibration(const YamlReader& y, const YAML::Node& n, JobSpec& job) {
  y.expect_map(n, "calibration");
  y.check_keys(n, "calibration",
               {"data", "format", "tokens", "samples", "seq_len", "seed", "activations", "mode"});
  CompressJob& c = job.compress;
  if (n["data"] && n["activations"])
    y.fail(n["activations"], "calibration takes either 'data' (text to sample) or 'activations' (an HDF5 file), not both");
  if (n["activations"]) {
    for (const char* k : {"format", "tokens", "samples", "seq_len", "seed"})
      if (n[k]) y.fail(n[k], std::string("'") + k + "' describes text sampling; the activation file fixes it");
    c.calib_file = y.str(n["activations"], "calibration.activations");
  } else if (n["data"]) {
    c.has_calib_request = true;
    CalibrationRequest& r = c.calib_request;
    r.data = y.str(n["data"], "calibration.data");
    if (n["format"]) r.format = y.data_format(n["format"], "calibration.format");
    if (n["tokens"]) r.token_file = y.boolean(n["tokens"], "calibration.tokens");
    if (n["samples"]) r.samples = y.positive(n["samples"], "calibration.samples");
    if (n["seq_len"]) r.seq_len = y.positive(n["seq_len"], "calibration.seq_len");
    if (n["seed"]) r.seed = y.unsigned_integer(n["seed"], "calibration.seed");
  } else {
    y.fail(n, "calibration needs 'data' (a text file) or 'activations' (a calibration HDF5 file)");
  }
  if (n["mode"]) {
    const std::string mode = y.str(n["mode"], "calibration.mode");
    if (mode != "sequential" && mode != "independent")
      y.fail(n["mode"], "mode must be 'sequential' or 'independent', got '" + mode + "'");
    c.independent = mode == "independent";
    if (c.independent && c.calib_file.empty())
      y.fail(n["mode"], "independent mode reads captured activations: set calibration.activations");
  }
}

// What libstdc++'s std::regex cannot be handed safely, or "": its compiler multiplies repeat
// counts and back-reference numbers in a signed long without an overflow check (UB found by the
// job_yaml fuzz harness), and it recurses per pattern element (a long pattern can exhaust the
// stack). Module names need neither.
std::string unsafe_regex_reason(const std::string& pattern) {
  constexpr size_t kMaxPattern = 512, kMaxDigits = 4;
  if (pattern.size() > kMaxPattern)
    return "is longer than " + std::to_string(kMaxPattern) + " characters";
  size_t run = 0;
  for (char c : pattern) {
    run = (c >= '0' && c <= '9') ? run + 1 : 0;
    if (run > kMaxDigits)
      return "holds a number of more than " + std::to_string(kMaxDigits) +
             " digits (a repeat count or back-reference this regex engine cannot take safely)";
  }
  return "";
}

void parse_overrides(const YamlReader& y, const YAML::Node& n, JobSpec& job) {
  y.expect_list(n, "overrides");
  for (const auto& o : n) {
    y.expect_map(o, "overrides entry");
    y.check_keys(o, "an override", {"match", "bits", "group_size", "args", "skip"});
    if (!o["match"]) y.fail(o, "an override needs 'match' (a regex searched in module names)");
    LayerOverride ov;
    ov.pattern = y.str(o["match"], "match");
    if (const std::string why = unsafe_regex_reason(ov.pattern); !why.empty())
      y.fail(o["match"], "'" + ov.pattern.substr(0, 80) + "' " + why);
    try {
      std::regex re(ov.pattern);
    } catch (const std::regex_error& e) {
      y.fail(o["match"], "'" + ov.pattern + "' is not a valid regular expression: " + e.what());
    }
    if (o["bits"]) ov.bits = y.positive(o["bits"], "bits");
    if (o["group_size"]) ov.group_size = y.integer(o["group_size"], "group_size");
    if (o["skip"]) ov.skip = y.boolean(o["skip"], "skip");
    if (o["args"]) {
      const YAML::Node args = o["args"];
      y.expect_map(args, "override args");
      y.check_unique_keys(args, "the override's args");
      for (auto it = args.begin(); it != args.end(); ++it) {
        const std::string key = it->first.Scalar();
        const YAML::Node v = it->second;
        if (!v.IsScalar()) y.fail(v, "override arg '" + key + "' must be a scalar (number, flag or word)");
        if (v.Tag() != "!" && (v.Scalar() == "true" || v.Scalar() == "false")) {
          if (y.boolean(v, key)) ov.args.push_back({key, ""});
          else ov.unset.push_back(key);
        } else {
          ov.args.push_back({key, v.Scalar()});
        }
      }
    }
    job.compress.pipeline.overrides.push_back(ov);
  }
}

void parse_output(const YamlReader& y, const YAML::Node& n, JobSpec& job) {
  y.expect_map(n, "output");
  y.check_keys(n, "output", {"dir", "format", "overwrite"});
  if (!n["dir"]) y.fail(n, "output needs 'dir'");
  job.compress.out_dir = y.str(n["dir"], "output.dir");
  if (n["overwrite"]) job.compress.overwrite = y.boolean(n["overwrite"], "output.overwrite");
  if (n["format"]) {
    job.compress.format = y.str(n["format"], "output.format");
    try {
      format_traits(job.compress.format);
    } catch (const Error& e) {
      y.fail(n["format"], e.what());
    }
  }
}

void parse_eval(const YamlReader& y, const YAML::Node& n, JobSpec& job) {
  y.expect_list(n, "eval");
  for (const auto& e : n) {
    y.expect_map(e, "eval entry");
    y.check_keys(e, "an eval entry", {"path", "format", "protocol", "seq_len", "max_samples", "tokenizer"});
    if (!e["path"]) y.fail(e, "an eval entry needs 'path' (a text file)");
    if (e["format"] && e["protocol"]) y.fail(e["protocol"], "give 'format' or 'protocol', not both");
    EvalDataset d;
    d.path = y.str(e["path"], "eval.path");
    YAML::Node f = e["format"] ? e["format"] : e["protocol"];
    if (f) d.format = y.data_format(f, "eval.format");
    if (e["seq_len"]) d.seq_len = y.positive(e["seq_len"], "eval.seq_len");
    if (e["max_samples"]) d.max_samples = y.integer(e["max_samples"], "eval.max_samples");
    if (e["tokenizer"]) d.tokenizer = y.str(e["tokenizer"], "eval.tokenizer");
    job.evals.push_back(d);
  }
}

// Which node to blame when a layer's grid does not fit: the last override that changed its grid,
// else the recipe.
YAML::Node blame_node(const std::string& layer, const JobSpec& job, const YAML::Node& recipe,
                      const YAML::Node& overrides) {
  // The quantizer stage itself when the recipe is a list (one entry per stage).
  YAML::Node blamed = recipe;
  const auto& stages = job.compress.pipeline.recipe;
  if (recipe.IsSequence() && recipe.size() == stages.size())
    for (size_t i = 0; i < stages.size(); ++i)
      if (stage_role(stages[i].name) == StageRole::kQuantizer) blamed = recipe[i];
  const auto& ovs = job.compress.pipeline.overrides;
  for (size_t i = 0; i < ovs.size(); ++i)
    if ((ovs[i].bits || ovs[i].group_size || !ovs[i].args.empty() || !ovs[i].unset.empty()) &&
        std::regex_search(layer, std::regex(ovs[i].pattern)))
      blamed = overrides[i];
  return blamed;
}

// Asks the model for its layer shapes and the output format whether it can hold each grid.
void check_against_model(const YamlReader& y, const YAML::Node& root, const JobSpec& job) {
  std::unique_ptr<Model> model;
  try {
    model = std::make_unique<Model>(Model::open(job.compress.model_path));
    reject_quantized_source(*model);
  } catch (const Error& e) {
    y.fail(root["model"]["path"], e.what());
  }
  const FormatTraits& format = format_traits(job.compress.format);
  PipelineOptions options = job.compress.pipeline;
  options.constraints = format.constraints;
  add_format_fallbacks(*model, format, options);
  const YAML::Node format_node = root["output"]["format"] ? root["output"]["format"] : root["output"];
  for (const auto& name : linear_layer_names(model->config())) {
    const YAML::Node blamed = blame_node(name, job, root["recipe"], root["overrides"]);
    std::unique_ptr<WeightQuantizer> q;
    try {
      q = layer_quantizer(name, options);
    } catch (const Error& e) {
      y.fail(blamed, name + ": " + e.what());
    }
    if (!q) continue;
    const TensorInfo* info = model->tensors().find(name + ".weight");
    const std::string why = format.grid_refusal(int(info->shape[0]), int(info->shape[1]), q->grid());
    if (!why.empty())
      y.fail(blamed, "output format '" + job.compress.format + "' cannot hold " + q->spec() + " for this layer: " +
                         name + ": " + why + " (format set at " + y.where(format_node) + ")");
  }
}

}  // namespace

JobSpec parse_job_yaml(const std::string& text, const std::string& source) {
  YamlReader y(source);
  YAML::Node root;
  if (text.size() > kMaxJobFileBytes)
    throw Error(source + ": a job file is at most " + std::to_string(kMaxJobFileBytes) + " bytes");
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(source + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                ": invalid YAML: " + e.msg);
  }
  if (!root.IsMap()) y.fail(root, "a job file is a mapping with model, recipe, output, ... (see ptq run --print-schema)");
  y.check_keys(root, "the job",
               {"model", "calibration", "recipe", "overrides", "true_sequential", "output", "eval", "report", "threads"});
  JobSpec job;
  job.source = source;
  for (const char* k : {"model", "recipe", "output"})
    if (!root[k]) y.fail(root, std::string("the job needs '") + k + "'");
  parse_model(y, root["model"], job);
  if (root["calibration"]) parse_calibration(y, root["calibration"], job);
  job.compress.pipeline.recipe = parse_recipe_node(y, root["recipe"]);
  if (root["overrides"]) parse_overrides(y, root["overrides"], job);
  if (root["true_sequential"])
    job.compress.pipeline.true_sequential = y.boolean(root["true_sequential"], "true_sequential");
  parse_output(y, root["output"], job);
  if (root["eval"]) parse_eval(y, root["eval"], job);
  if (root["report"]) {
    y.expect_map(root["report"], "report");
    y.check_keys(root["report"], "report", {"dir"});
    if (!root["report"]["dir"]) y.fail(root["report"], "report needs 'dir'");
    job.report_dir = y.str(root["report"]["dir"], "report.dir");
  }
  if (root["threads"]) {
    job.threads = y.integer(root["threads"], "threads");
    if (job.threads < 0) y.fail(root["threads"], "threads must be 0 (default) or positive");
  }
  if (recipe_needs_stats(job.compress.pipeline.recipe) && !root["calibration"])
    y.fail(root["recipe"], "recipe '" + recipe_to_string(job.compress.pipeline.recipe) +
                               "' needs calibration data: add a 'calibration' section");
  check_against_model(y, root, job);
  return job;
}

JobSpec load_job_file(const std::string& path) {
  return parse_job_yaml(read_text_file(path, kMaxJobFileBytes), path);
}

std::vector<Spec> recipe_from_yaml_text(const std::string& yaml_text) {
  YamlReader y("recipe");
  return parse_recipe_node(y, YAML::Load(yaml_text));
}

}  // namespace ptq
