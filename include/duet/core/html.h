// Text for the self-contained HTML reports (simulation, quantization).
#pragma once
#include <sstream>
#include <string>

namespace duet {

// A number with `significant` digits as a report prints it (1.234, 0.0001235, 1.2e+06, inf).
inline std::string format_number(double v, int significant = 4) {
  std::ostringstream o;
  o.precision(significant);
  o << v;
  return o.str();
}

// Escapes the characters HTML and attribute values treat specially.
inline std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else if (c == '\'') o += "&#39;";
    else o += c;
  }
  return o;
}

}  // namespace duet
