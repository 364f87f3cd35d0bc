#pragma once
// Output formats of `ptq compress --format NAME`, registered by name like the algorithms, so the
// pipeline and the CLI name no format. A writer receives each quantized layer as the pipeline
// finishes it and writes the checkpoint into a staging OutputDir at the end.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "algorithms/quantizer.h"
#include "formats/metadata.h"
#include "formats/output_dir.h"
#include "ptq/model.h"
#include "ptq/pipeline.h"

namespace ptq {

class CheckpointWriter {
 public:
  virtual ~CheckpointWriter() = default;
  // Throws Error before any work when the format cannot hold `grid` for a layer of this shape
  // (e.g. bits the layout has no packing for).
  virtual void validate(const std::string& layer, int rows, int cols, const QuantGrid& grid) const {}
  // q is nullptr for a layer the recipe skipped (it stays in full precision).
  virtual void add_layer(const LayerResult& result, const GridCodes* q) = 0;
  // A full-precision tensor that a transform changed (e.g. an RMSNorm gain with scales folded
  // in): written instead of the source's tensor of that name.
  virtual void replace_tensor(const std::string& name, const Mat& value) = 0;
  virtual void finish(const Model& model, const CheckpointMetadata& meta, const OutputDir& out) = 0;
};

using CheckpointWriterFactory = std::function<std::unique_ptr<CheckpointWriter>()>;
void register_checkpoint_format(const std::string& name, CheckpointWriterFactory f);
std::unique_ptr<CheckpointWriter> make_checkpoint_writer(const std::string& name);  // Error if unknown
std::vector<std::string> registered_checkpoint_formats();

struct CheckpointFormatRegistrar {
  CheckpointFormatRegistrar(const std::string& name, CheckpointWriterFactory f) {
    register_checkpoint_format(name, std::move(f));
  }
};

}  // namespace ptq
