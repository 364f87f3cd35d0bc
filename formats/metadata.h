#pragma once
// Provenance written into every checkpoint's safetensors __metadata__ (all values are strings):
//   ptq.version, ptq.commit   the tool that wrote it
//   ptq.recipe                the canonical recipe spec string
//   ptq.calibration           JSON: model_sha256, data_sha256, data_path, sampler, seed,
//                             samples, seq_len (or {"mode": "none"} for RTN without data)
//   ptq.layers                JSON array: name, spec, rel_error, bits_per_weight per layer
// Nothing time-dependent is stored, so reruns give byte-identical files.
#include <map>
#include <string>
#include <vector>

#include "ptq/calibration_info.h"
#include "ptq/pipeline.h"

namespace ptq {

struct CheckpointMetadata {
  std::string recipe;
  bool has_calibration = false;
  CalibrationInfo calibration;
  std::vector<LayerResult> layers;
  std::map<std::string, std::string> to_strings() const;
};

}  // namespace ptq
