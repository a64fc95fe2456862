// The CLI's message level and its progress display (commands.h).
//
// Progress goes to stderr, never stdout, so `--json` output stays clean. It is
// drawn when stderr is a terminal, or with --progress (logs, CI), and not under
// --quiet or --log-level warning|error. A terminal gets one line redrawn at
// most ten times a second; anything else (a log) gets a line per tenth of a
// stage and one when it ends, so it stays short. A stage that ends within half
// a second draws nothing. Each line:
//   plan: sensitivity  12/40  30%  3.1/s  elapsed 0:04  ETA 0:09
// (the rate in the stage's units a second, the ETA from the stage's rate so far).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>

#include "commands.h"

namespace duet::cli {

Logging& logging() {
  static Logging l;
  return l;
}

bool shows(LogLevel level) { return static_cast<int>(level) <= static_cast<int>(logging().level); }

bool progress_shown() {
  const Logging& l = logging();
  return shows(LogLevel::Info) && (l.progress || l.level == LogLevel::Debug || isatty(2));
}

namespace {

using Clock = std::chrono::steady_clock;

std::string clock_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

std::string rate_text(double per_s) {
  char buf[32];
  if (per_s >= 100) std::snprintf(buf, sizeof buf, "%.0f/s", per_s);
  else if (per_s >= 1) std::snprintf(buf, sizeof buf, "%.1f/s", per_s);
  else std::snprintf(buf, sizeof buf, "%.2f/s", per_s);
  return buf;
}

struct Display {
  std::mutex mutex;
  std::string command, stage;
  Clock::time_point stage_start, last_draw;
  int tenth = -1;
  bool terminal = false, open_line = false;
  size_t width = 0;

  void draw(const std::string& s, size_t done, size_t total) {
    const auto now = Clock::now();
    if (s != stage) {
      if (open_line) std::cerr << "\n";
      open_line = false;
      stage = s, stage_start = now, tenth = -1, width = 0;
      last_draw = Clock::time_point();
    }
    const bool finished = total > 0 && done >= total;
    // A stage shorter than half a second says nothing (a log of quick stages stays readable).
    if (now - stage_start < std::chrono::milliseconds(500)) return;
    const int t = total ? static_cast<int>(10 * std::min(done, total) / total) : 0;
    if (terminal) {
      if (!finished && now - last_draw < std::chrono::milliseconds(100)) return;
    } else if (t == tenth && !finished) {
      return;
    }
    if (!terminal && finished && t == tenth && tenth == 10) return;  // the end was already said
    tenth = t, last_draw = now;
    const double elapsed = std::chrono::duration<double>(now - stage_start).count();
    std::ostringstream line;
    line << command << ": " << stage << "  " << done;
    if (total) line << "/" << total << "  " << (100 * std::min(done, total) / total) << "%";
    if (elapsed > 0 && done > 0) line << "  " << rate_text(static_cast<double>(done) / elapsed);
    line << "  elapsed " << clock_text(elapsed);
    if (!finished && total && done > 0) line << "  ETA " << clock_text(elapsed * static_cast<double>(total - done) / done);
    std::string text = line.str();
    if (terminal) {
      const size_t shown = text.size();
      if (text.size() < width) text += std::string(width - text.size(), ' ');  // cover a longer previous line
      width = shown;
      std::cerr << "\r" << text << (finished ? "\n" : "") << std::flush;
      open_line = !finished;
    } else {
      std::cerr << text << "\n" << std::flush;
    }
  }
  ~Display() {
    if (open_line) std::cerr << "\n";
  }
};

}  // namespace

Progress progress_display(const std::string& command) {
  if (!progress_shown()) return {};
  auto d = std::make_shared<Display>();
  d->command = command;
  d->terminal = isatty(2);
  return [d](const std::string& stage, size_t done, size_t total) {
    std::lock_guard<std::mutex> lock(d->mutex);
    d->draw(stage, done, total);
  };
}

void note(const std::string& command, const std::string& text, LogLevel level) {
  if (!shows(level)) return;
  std::cerr << command << ": " << (level == LogLevel::Warning ? "warning: " : "") << text << "\n";
}

}  // namespace duet::cli
