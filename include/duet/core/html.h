// Text for the self-contained HTML reports (simulation, quantization).
#pragma once
#include <string>

namespace duet {

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
