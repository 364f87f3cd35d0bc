#pragma once
// Spec strings: `name(arg,arg,...)` where each arg is a bare flag (`act_order`), a key=value
// pair (`damp=0.01`), or a letter-prefixed number (`w4` = bits 4, `g128` = group size 128).
// A recipe joins specs with '+': `rot(hadamard)+awq+gptq(w4,g128,act_order)`.
// Parsing then printing gives the canonical string; algorithms print their own canonical
// form (defaults omitted) via WeightQuantizer::spec().
#include <optional>
#include <string>
#include <vector>

namespace ptq {

struct SpecArg {
  std::string key;    // "act_order", "w", "g", "damp"
  std::string value;  // "" for a bare flag, "4", "128", "0.01"
  bool operator==(const SpecArg&) const = default;
};

struct Spec {
  std::string name;
  std::vector<SpecArg> args;
  std::string to_string() const;
  // Equality is on the text (name and args); which args were read is bookkeeping, so a spec
  // that has been queried still equals a freshly parsed one.
  bool operator==(const Spec& o) const { return name == o.name && args == o.args; }

  // Typed accessors; each marks the arg used. `check_all_used` throws Error naming any
  // argument the algorithm did not understand.
  bool flag(const std::string& key) const;
  std::optional<std::string> value(const std::string& key) const;
  int int_value(const std::string& key, int def) const;
  double double_value(const std::string& key, double def) const;
  void check_all_used() const;
  bool has(const std::string& key) const;  // present at all (does not mark it used)

 private:
  int find(const std::string& key) const;  // index into args, -1 when absent; marks it used

  mutable std::vector<bool> used_;
};

Spec parse_spec(const std::string& text);                 // throws Error quoting the text
std::vector<Spec> parse_recipe(const std::string& text);  // '+'-joined
std::string recipe_to_string(const std::vector<Spec>& recipe);
// The shortest text that parses back to `v` (std::to_chars): how specs print numeric arguments.
std::string spec_number(double v);

}  // namespace ptq
