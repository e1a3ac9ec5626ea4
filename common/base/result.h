// Result<T>: the project's value-or-error type for expected failures (traffic, peers, files,
// the environment). An Error carries an error_code when one exists and a message that says what
// failed and while doing what.
#pragma once

#include <string>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <tl/expected.hpp>

namespace zt {

struct Error {
  std::error_code code;
  std::string message;

  // "message: code text" when a code is present.
  std::string describe() const;
};

template <class T>
using Result = tl::expected<T, Error>;

using Status = Result<void>;

inline tl::unexpected<Error> fail(std::string message) {
  return tl::unexpected<Error>(Error{{}, std::move(message)});
}

inline tl::unexpected<Error> fail(std::error_code code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

template <class... Args>
tl::unexpected<Error> failf(fmt::format_string<Args...> f, Args&&... args) {
  return fail(fmt::format(f, std::forward<Args>(args)...));
}

// Adds context in front of an error: "while X: <original>".
inline Error wrap(Error e, std::string_view context) {
  e.message = fmt::format("{}: {}", context, e.message);
  return e;
}

inline std::string Error::describe() const {
  if (!code) return message;
  return fmt::format("{}: {}", message, code.message());
}

}  // namespace zt
