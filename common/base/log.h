// Logging: one spdlog logger per process, key=value fields in text mode, one JSON object per
// line in JSON mode. Components name themselves in the message ("component=inbound ...").
#pragma once

#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

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

}  // namespace zt::log

#define ZT_LOG_TRACE(...) ::spdlog::trace(__VA_ARGS__)
#define ZT_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define ZT_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define ZT_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define ZT_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
