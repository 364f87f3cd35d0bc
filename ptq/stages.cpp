#include "ptq/stages.h"

#include <map>
#include <mutex>
#include <variant>

#include "ptq/error.h"

namespace ptq {

const char* stage_role_name(StageRole r) {
  switch (r) {
    case StageRole::kTransform: return "transform";
    case StageRole::kQuantizer: return "quantizer";
    case StageRole::kRefiner: return "refiner";
  }
  return "?";
}

namespace {

using AnyFactory = std::variant<TransformFactory, QuantizerFactory, RefinerFactory>;  // index = role

struct Registry {
  std::mutex mutex;
  std::map<std::string, AnyFactory> stages;
};
Registry& registry() {
  static Registry r;  // function-local: safe in static initialisation
  return r;
}

void add(const std::string& name, AnyFactory f) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  PTQ_ASSERT(!r.stages.count(name), "stage registered twice");
  r.stages.emplace(name, std::move(f));
}

std::string known(StageRole role) {
  std::string s;
  for (const auto& n : registered_stages(role)) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "none" : s;
}

template <StageRole Role>
auto factory(const Spec& spec) {
  std::optional<AnyFactory> f;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.stages.find(spec.name);
    if (it != r.stages.end()) f = it->second;
  }
  if (!f) {
    throw Error("unknown algorithm '" + spec.name + "' (known " + stage_role_name(Role) + "s: " + known(Role) + ")");
  }
  if (f->index() != size_t(Role))
    throw Error("'" + spec.name + "' is a " + stage_role_name(StageRole(f->index())) + ", not a " +
                stage_role_name(Role) + " (known " + stage_role_name(Role) + "s: " + known(Role) + ")");
  return std::get<size_t(Role)>(*f);
}

}  // namespace

void register_quantizer(const std::string& name, QuantizerFactory f) { add(name, AnyFactory(std::in_place_index<1>, std::move(f))); }
void register_transform(const std::string& name, TransformFactory f) { add(name, AnyFactory(std::in_place_index<0>, std::move(f))); }
void register_refiner(const std::string& name, RefinerFactory f) { add(name, AnyFactory(std::in_place_index<2>, std::move(f))); }

std::optional<StageRole> stage_role(const std::string& name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.stages.find(name);
  if (it == r.stages.end()) return std::nullopt;
  return StageRole(it->second.index());
}

std::vector<std::string> registered_stages(StageRole role) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [name, f] : r.stages)
    if (f.index() == size_t(role)) names.push_back(name);
  return names;
}

std::unique_ptr<WeightQuantizer> make_quantizer(const Spec& spec, const GridConstraints& c) {
  return factory<StageRole::kQuantizer>(spec)(spec, c);
}
std::unique_ptr<WeightTransform> make_transform(const Spec& spec) { return factory<StageRole::kTransform>(spec)(spec); }
std::unique_ptr<LayerRefiner> make_refiner(const Spec& spec) { return factory<StageRole::kRefiner>(spec)(spec); }

bool is_transform(const std::string& name) { return stage_role(name) == StageRole::kTransform; }

StageRole known_stage_role(const std::string& name) {
  const std::optional<StageRole> role = stage_role(name);
  if (!role)
    throw Error("unknown algorithm '" + name + "' (transforms: " + known(StageRole::kTransform) +
                "; quantizers: " + known(StageRole::kQuantizer) + "; refiners: " + known(StageRole::kRefiner) + ")");
  return *role;
}

RecipeStages split_recipe(const std::vector<Spec>& recipe) {
  const std::string text = recipe_to_string(recipe);
  RecipeStages out;
  bool have_quantizer = false;
  for (const Spec& s : recipe) {
    std::optional<StageRole> role;
    try {
      role = known_stage_role(s.name);
    } catch (const Error& e) {
      throw Error("recipe '" + text + "': " + e.what());
    }
    switch (*role) {
      case StageRole::kTransform:
        if (have_quantizer)
          throw Error("recipe '" + text + "': transform '" + s.name + "' comes after the quantizer; "
                      "transforms run before it");
        out.transforms.push_back(s);
        break;
      case StageRole::kQuantizer:
        if (have_quantizer)
          throw Error("recipe '" + text + "': a recipe has one quantizer, found '" + out.quantizer.name +
                      "' and '" + s.name + "'");
        out.quantizer = s;
        have_quantizer = true;
        break;
      case StageRole::kRefiner:
        if (!have_quantizer)
          throw Error("recipe '" + text + "': refiner '" + s.name + "' comes before the quantizer; "
                      "refiners run after it");
        out.refiners.push_back(s);
        break;
    }
  }
  if (!have_quantizer)
    throw Error("recipe '" + text + "' has no quantizer stage (quantizers: " + known(StageRole::kQuantizer) + ")");
  return out;
}

bool recipe_needs_stats(const std::vector<Spec>& recipe) {
  const RecipeStages stages = split_recipe(recipe);
  if (make_quantizer(stages.quantizer)->needs_stats()) return true;
  for (const Spec& t : stages.transforms)
    if (make_transform(t)->needs_stats()) return true;
  for (const Spec& r : stages.refiners)
    if (make_refiner(r)->needs_stats()) return true;
  return false;
}

void attach_input_transform(GroupContext& group, const InputTransform& t) {
  PTQ_ASSERT(group.stats && group.stats->k() == t.size);
  auto shared = std::make_shared<const InputTransform>(t);
  for (Linear* layer : group.layers) {
    PTQ_ASSERT(!layer->input_transform, "a group takes one input transform");
    layer->w = t.fold_into_weight(layer->w);
    layer->input_transform = shared;
  }
  if (group.stats->tokens() > 0) group.stats->transform_input(t.matrix().cast<double>());  // zero stays zero
}

}  // namespace ptq
