// GCC 12 reports false -Wmaybe-uninitialized inside Eigen's AVX-512 kernels and a false
// -Wrestrict in std::string concatenation (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wrestrict"
#include "ptq/spec.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <set>

#include "ptq/error.h"

// Grammar (whitespace between tokens is ignored):
//   recipe := spec ('+' spec)*
//   spec   := name [ '(' [ arg (',' arg)* ] ')' ]
//   name   := ident
//   arg    := ident '=' value          key=value
//           | letter ['-'] digits      letter-prefixed number: w4, g128, g-1
//           | ident                    bare flag
//   ident  := [A-Za-z_][A-Za-z0-9_]*
//   value  := [A-Za-z0-9_.+-]+  (a '+' only directly after 'e'/'E', as in 1e+3)

namespace ptq {
namespace {

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

bool is_integer(const std::string& s) {
  size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

class Parser {
 public:
  explicit Parser(const std::string& text) : t_(text) {}

  std::vector<Spec> recipe() {
    std::vector<Spec> out;
    out.push_back(spec());
    skip_ws();
    while (peek() == '+') {
      ++p_;
      out.push_back(spec());
      skip_ws();
    }
    if (p_ != t_.size()) fail("expected '+' or end of text");
    return out;
  }

  Spec single() {
    Spec s = spec();
    skip_ws();
    if (p_ != t_.size()) fail("expected end of text after the spec");
    return s;
  }

 private:
  const std::string& t_;
  size_t p_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error("invalid spec '" + t_ + "' at position " + std::to_string(p_) + ": " + what);
  }
  char peek() const { return p_ < t_.size() ? t_[p_] : '\0'; }
  void skip_ws() {
    while (p_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[p_]))) ++p_;
  }

  std::string ident(const char* what) {
    skip_ws();
    if (!ident_start(peek())) fail(std::string("expected ") + what);
    size_t b = p_;
    while (ident_char(peek())) ++p_;
    return t_.substr(b, p_ - b);
  }

  std::string value() {
    skip_ws();
    size_t b = p_;
    for (char c = peek(); c != '\0'; c = peek()) {
      bool exp_sign = c == '+' && p_ > b && (t_[p_ - 1] == 'e' || t_[p_ - 1] == 'E');
      if (!(ident_char(c) || c == '.' || c == '-' || exp_sign)) break;
      ++p_;
    }
    if (p_ == b) fail("expected a value after '='");
    return t_.substr(b, p_ - b);
  }

  SpecArg arg() {
    skip_ws();
    size_t b = p_;
    // A letter followed by an (optionally negative) integer is a letter-keyed number.
    if (std::isalpha(static_cast<unsigned char>(peek()))) {
      size_t q = p_ + 1;
      if (q < t_.size() && t_[q] == '-') ++q;
      size_t digits = q;
      while (q < t_.size() && std::isdigit(static_cast<unsigned char>(t_[q]))) ++q;
      if (q > digits && (q == t_.size() || (!ident_char(t_[q]) && t_[q] != '='))) {
        p_ = q;
        return {t_.substr(b, 1), t_.substr(b + 1, q - b - 1)};
      }
    }
    SpecArg a{ident("an argument (flag, key=value or letter+number)"), ""};
    skip_ws();
    if (peek() == '=') {
      ++p_;
      a.value = value();
    }
    return a;
  }

  Spec spec() {
    Spec s;
    s.name = ident("an algorithm name");
    skip_ws();
    if (peek() != '(') return s;
    ++p_;
    skip_ws();
    if (peek() == ')') {
      ++p_;
      return s;
    }
    std::set<std::string> seen;
    while (true) {
      size_t at = p_;
      SpecArg a = arg();
      if (!seen.insert(a.key).second) {
        p_ = at;
        fail("argument '" + a.key + "' given twice");
      }
      s.args.push_back(a);
      skip_ws();
      if (peek() == ',') {
        ++p_;
        continue;
      }
      if (peek() == ')') {
        ++p_;
        return s;
      }
      fail("expected ',' or ')'");
    }
  }
};

}  // namespace

std::string Spec::to_string() const {
  if (args.empty()) return name;
  std::string out = name + "(";
  for (size_t i = 0; i < args.size(); ++i) {
    const SpecArg& a = args[i];
    if (i) out += ",";
    out += a.key;
    if (a.value.empty()) continue;
    bool letter_number = a.key.size() == 1 && std::isalpha(static_cast<unsigned char>(a.key[0])) &&
                         is_integer(a.value);
    out += letter_number ? a.value : "=" + a.value;
  }
  return out + ")";
}

int Spec::find(const std::string& key) const {
  used_.resize(args.size(), false);
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].key == key) {
      used_[i] = true;
      return static_cast<int>(i);
    }
  }
  return -1;
}

bool Spec::has(const std::string& key) const {
  for (const SpecArg& a : args)
    if (a.key == key) return true;
  return false;
}

bool Spec::flag(const std::string& key) const {
  int i = find(key);
  if (i < 0) return false;
  if (!args[i].value.empty())
    throw Error("spec '" + to_string() + "': '" + key + "' is a flag and takes no value");
  return true;
}

std::optional<std::string> Spec::value(const std::string& key) const {
  int i = find(key);
  if (i < 0) return std::nullopt;
  return args[i].value;
}

int Spec::int_value(const std::string& key, int def) const {
  std::optional<std::string> v = value(key);
  if (!v) return def;
  int out = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size() || v->empty())
    throw Error("spec '" + to_string() + "': '" + key + "' needs an integer, got '" + *v + "'");
  return out;
}

double Spec::double_value(const std::string& key, double def) const {
  std::optional<std::string> v = value(key);
  if (!v) return def;
  double out = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size() || v->empty())
    throw Error("spec '" + to_string() + "': '" + key + "' needs a number, got '" + *v + "'");
  return out;
}

void Spec::check_all_used() const {
  used_.resize(args.size(), false);
  std::string unused;
  for (size_t i = 0; i < args.size(); ++i)
    if (!used_[i]) unused += (unused.empty() ? "'" : ", '") + args[i].key + "'";
  if (!unused.empty())
    throw Error("spec '" + to_string() + "': " + name + " does not understand " + unused);
}

Spec parse_spec(const std::string& text) { return Parser(text).single(); }

std::vector<Spec> parse_recipe(const std::string& text) { return Parser(text).recipe(); }

std::string recipe_to_string(const std::vector<Spec>& recipe) {
  std::string out;
  for (size_t i = 0; i < recipe.size(); ++i) out += (i ? "+" : "") + recipe[i].to_string();
  return out;
}

std::string spec_number(double v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

}  // namespace ptq
