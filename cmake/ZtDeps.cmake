# Third-party dependencies, all from Debian 12 packages (see scripts/setup.sh).
find_package(Threads REQUIRED)
find_package(OpenSSL 3.0 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET libnghttp2)
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(tl-expected REQUIRED)
find_package(nlohmann_json REQUIRED)

# Boost 1.81 (Asio 1.26). Debian installs it under /usr/include/boost with version 1.81.
find_package(Boost 1.81 REQUIRED)
if(Boost_VERSION VERSION_LESS 1.81)
  message(FATAL_ERROR "Boost ${Boost_VERSION} found; install libboost1.81-dev (not libboost-dev 1.74)")
endif()
