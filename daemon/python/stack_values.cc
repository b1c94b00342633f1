// See stack_values.h.
#include "daemon/python/stack_values.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace procwarp::python {
namespace {

// Python's quote choice: single quotes unless the text has a single quote
// and no double quote.
char PickQuote(bool has_single, bool has_double) {
  return has_single && !has_double ? '"' : '\'';
}

void AppendUtf8(uint32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// The escapes str and bytes share; false when `c` is none of them.
bool AppendCommonEscape(uint32_t c, char quote, std::string* out) {
  switch (c) {
    case '\\': out->append("\\\\"); return true;
    case '\n': out->append("\\n"); return true;
    case '\r': out->append("\\r"); return true;
    case '\t': out->append("\\t"); return true;
    default: break;
  }
  if (c == static_cast<uint32_t>(quote)) {
    out->push_back('\\');
    out->push_back(quote);
    return true;
  }
  return false;
}

}  // namespace

std::string FloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  // The shortest %e form that reads back exactly.
  std::string e;
  for (int precision = 0; precision <= 17; ++precision) {
    e = absl::StrFormat("%.*e", precision, value);
    if (std::strtod(e.c_str(), nullptr) == value) break;
  }
  // e = [-]D[.DDD]e(+|-)XX: digits and decimal exponent.
  const bool negative = e[0] == '-';
  const size_t e_pos = e.find('e');
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e_pos; ++i) {
    if (e[i] != '.') digits.push_back(e[i]);
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int exponent = std::atoi(e.c_str() + e_pos + 1);
  const int point = exponent + 1;  // digits before the decimal point
  std::string out = negative ? "-" : "";
  // float_repr_style 'short': fixed notation for 1e-4 <= |x| < 1e16.
  if (point > -4 && point <= 16) {
    if (point <= 0) {
      out += "0.";
      out.append(-point, '0');
      out += digits;
    } else if (static_cast<size_t>(point) >= digits.size()) {
      out += digits;
      out.append(point - digits.size(), '0');
      out += ".0";
    } else {
      out += digits.substr(0, point);
      out += ".";
      out += digits.substr(point);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  out += absl::StrFormat("e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out;
}

std::string LongRepr(absl::Span<const uint32_t> digits, int shift, bool negative) {
  // Schoolbook conversion: the magnitude in base 10^9 limbs.
  std::vector<uint32_t> limbs;  // little-endian, base 1e9
  constexpr uint64_t kBase = 1000000000;
  for (size_t i = digits.size(); i-- > 0;) {
    uint64_t carry = digits[i];
    for (uint32_t& limb : limbs) {
      uint64_t v = (static_cast<uint64_t>(limb) << shift) + carry;
      limb = static_cast<uint32_t>(v % kBase);
      carry = v / kBase;
    }
    while (carry != 0) {
      limbs.push_back(static_cast<uint32_t>(carry % kBase));
      carry /= kBase;
    }
  }
  if (limbs.empty()) return "0";
  std::string out = negative ? "-" : "";
  out += absl::StrCat(limbs.back());
  for (size_t i = limbs.size() - 1; i-- > 0;) {
    out += absl::StrFormat("%09u", limbs[i]);
  }
  return out;
}

std::string StrRepr(absl::Span<const uint32_t> code_points) {
  bool has_single = false, has_double = false;
  for (uint32_t c : code_points) {
    has_single |= c == '\'';
    has_double |= c == '"';
  }
  const char quote = PickQuote(has_single, has_double);
  std::string out(1, quote);
  for (uint32_t c : code_points) {
    if (AppendCommonEscape(c, quote, &out)) continue;
    if (c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0xA0) || c == 0xAD) {
      out += absl::StrFormat("\\x%02x", c);
    } else if ((c >= 0xD800 && c <= 0xDFFF) || (c >= 0x2028 && c <= 0x2029)) {
      out += absl::StrFormat("\\u%04x", c);
    } else if (c > 0x10FFFF) {
      out += absl::StrFormat("\\U%08x", c);
    } else {
      AppendUtf8(c, &out);
    }
  }
  out.push_back(quote);
  return out;
}

std::string Utf8(absl::Span<const uint32_t> code_points) {
  std::string out;
  for (uint32_t c : code_points) {
    // Lone surrogates have no UTF-8 form (and protobuf strings must be UTF-8).
    const bool encodable = c <= 0x10FFFF && (c < 0xD800 || c > 0xDFFF);
    AppendUtf8(encodable ? c : 0xFFFD, &out);
  }
  return out;
}

std::string BytesRepr(absl::string_view bytes) {
  bool has_single = false, has_double = false;
  for (char c : bytes) {
    has_single |= c == '\'';
    has_double |= c == '"';
  }
  const char quote = PickQuote(has_single, has_double);
  std::string out = absl::StrCat("b", std::string(1, quote));
  for (char ch : bytes) {
    const uint8_t c = static_cast<uint8_t>(ch);
    if (AppendCommonEscape(c, quote, &out)) continue;
    if (c < 0x20 || c >= 0x7F) {
      out += absl::StrFormat("\\x%02x", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back(quote);
  return out;
}

}  // namespace procwarp::python
