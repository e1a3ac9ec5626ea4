// Logging: one spdlog logger per process, key=value fields in text mode, one JSON object per
// line in JSON mode. Components name themselves in the message ("component=inbound ...").
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include <fmt/format.h>

#include "common/base/result.h"

namespace zt::log {

enum class Format { kText, kJson };

// Configures the default logger to write to stderr. `level` is a spdlog level name
// (trace, debug, info, warn, error, off).
Status init(std::string_view level, Format format);

// Changes the level at run time (admin /logging).
Status set_level(std::string_view level);

std::string current_level();

// The format given to init() (text until then).
Format current_format();

// The macros below go through these, so that only log.cc (and code that configures sinks)
// includes spdlog: spdlog is compiled header-only into each program that links zt_base,
// which keeps it (and fmt) out of the shared libraries ztunnel maps.
enum class Level { kTrace, kDebug, kInfo, kWarn, kError };
// Whether the default logger writes `level` now (one atomic load).
bool enabled(Level level);
// Writes an already formatted message through the default logger.
void write(Level level, std::string_view message);

// A format string with arguments, checked at compile time as spdlog does.
template <typename... Args>
void emit(Level level, fmt::format_string<Args...> format, Args&&... args) {
  if (!enabled(level)) return;
  // fmt::vformat is compiled once (base/fmt_impl.cc); vformat_to into a buffer would compile
  // fmt's formatting engine into every file that logs.
  write(level, fmt::vformat(format, fmt::make_format_args(args...)));
}

// A single argument is the message as it is (braces are not interpreted), as in spdlog.
template <typename T>
void emit(Level level, const T& message) {
  if (!enabled(level)) return;
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    write(level, std::string_view(message));
  } else {
    write(level, fmt::to_string(message));
  }
}

}  // namespace zt::log

#define ZT_LOG_TRACE(...) ::zt::log::emit(::zt::log::Level::kTrace, __VA_ARGS__)
#define ZT_LOG_DEBUG(...) ::zt::log::emit(::zt::log::Level::kDebug, __VA_ARGS__)
#define ZT_LOG_INFO(...) ::zt::log::emit(::zt::log::Level::kInfo, __VA_ARGS__)
#define ZT_LOG_WARN(...) ::zt::log::emit(::zt::log::Level::kWarn, __VA_ARGS__)
#define ZT_LOG_ERROR(...) ::zt::log::emit(::zt::log::Level::kError, __VA_ARGS__)
