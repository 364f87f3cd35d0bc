#include "algorithms/transform.h"

#include <map>

#include "ptq/error.h"

namespace ptq {

static std::map<std::string, TransformFactory>& transforms() {
  static std::map<std::string, TransformFactory> m;
  return m;
}

void register_transform(const std::string& name, TransformFactory f) { transforms()[name] = f; }

bool is_transform(const std::string& name) { return transforms().count(name) > 0; }

std::unique_ptr<WeightTransform> make_transform(const Spec& spec) {
  auto it = transforms().find(spec.name);
  if (it == transforms().end()) {
    std::string known;
    for (const auto& [n, f] : transforms()) known += (known.empty() ? "" : ", ") + n;
    throw Error("'" + spec.name + "' is not a transform stage (known transforms: " +
                (known.empty() ? "none" : known) + "); only the last stage of a recipe quantizes");
  }
  return it->second(spec);
}

}  // namespace ptq
