#include "formats/metadata.h"

#include <nlohmann/json.hpp>

#include "ptq/version.h"

namespace ptq {

std::map<std::string, std::string> CheckpointMetadata::to_strings() const {
  nlohmann::json calib = {{"mode", "none"}};
  if (has_calibration) {
    const CalibrationInfo& c = calibration;
    calib = {{"model_sha256", c.model_sha256}, {"data_sha256", c.data_sha256},
             {"data_path", c.data_path},       {"sampler", c.sampler},
             {"seed", c.seed},                 {"samples", c.samples},
             {"seq_len", c.seq_len}};
  }
  nlohmann::json layer_list = nlohmann::json::array();
  for (const auto& l : layers) {
    layer_list.push_back({{"name", l.name},
                          {"spec", l.spec},
                          {"rel_error", l.rel_error},
                          {"bits_per_weight", l.bits_per_weight}});
    if (!l.parts.empty() && l.parts != "grid") layer_list.back()["parts"] = l.parts;
  }
  return {{"format", "pt"},
          {"ptq.version", kVersion},
          {"ptq.commit", kGitCommit},
          {"ptq.recipe", recipe},
          {"ptq.calibration", calib.dump()},
          {"ptq.layers", layer_list.dump()}};
}

}  // namespace ptq
