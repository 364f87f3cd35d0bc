#include "formats/checkpoint_writer.h"

#include <map>

#include "ptq/error.h"

namespace ptq {

static std::map<std::string, CheckpointWriterFactory>& formats() {
  static std::map<std::string, CheckpointWriterFactory> m;
  return m;
}

void register_checkpoint_format(const std::string& name, CheckpointWriterFactory f) {
  formats()[name] = std::move(f);
}

std::vector<std::string> registered_checkpoint_formats() {
  std::vector<std::string> names;
  for (const auto& [n, f] : formats()) names.push_back(n);
  return names;
}

std::unique_ptr<CheckpointWriter> make_checkpoint_writer(const std::string& name) {
  auto it = formats().find(name);
  if (it == formats().end()) {
    std::string known;
    for (const auto& n : registered_checkpoint_formats()) known += (known.empty() ? "" : ", ") + n;
    throw Error("unknown output format '" + name + "' (known: " + known + ")");
  }
  return it->second();
}

}  // namespace ptq
