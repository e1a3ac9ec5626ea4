// ztunnel and the waypoint speak gRPC through common/grpc: neither binary may need a gRPC,
// abseil, upb, c-ares or re2 shared library (they cost several MiB of resident memory), and the
// static build of ztunnel needs nothing but glibc. Reads the DT_NEEDED entries from the ELF
// dynamic section of build/bin/<binary>.
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <elf.h>
#include <gtest/gtest.h>

#include "common/base/result.h"
#include "tests/support/daemon.h"

namespace zt {
namespace {

// The DT_NEEDED names of a 64-bit little-endian ELF file, via its section headers: the
// SHT_DYNAMIC section and the string table its sh_link names.
Result<std::vector<std::string>> needed_libraries(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failf("cannot open {}", path);
  std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto at = [&](size_t off, size_t len) { return off <= file.size() && len <= file.size() - off; };
  if (!at(0, sizeof(Elf64_Ehdr))) return failf("{}: too small for an ELF header", path);
  Elf64_Ehdr eh;
  std::memcpy(&eh, file.data(), sizeof(eh));
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
    return failf("{}: not a 64-bit ELF file", path);
  if (eh.e_shentsize != sizeof(Elf64_Shdr) ||
      !at(eh.e_shoff, size_t{eh.e_shnum} * sizeof(Elf64_Shdr)))
    return failf("{}: bad section header table", path);
  auto section = [&](size_t i) {
    Elf64_Shdr sh;
    std::memcpy(&sh, file.data() + eh.e_shoff + i * sizeof(Elf64_Shdr), sizeof(sh));
    return sh;
  };
  for (size_t i = 0; i < eh.e_shnum; ++i) {
    Elf64_Shdr dyn = section(i);
    if (dyn.sh_type != SHT_DYNAMIC) continue;
    if (dyn.sh_link >= eh.e_shnum || !at(dyn.sh_offset, dyn.sh_size))
      return failf("{}: bad dynamic section", path);
    Elf64_Shdr str = section(dyn.sh_link);
    if (!at(str.sh_offset, str.sh_size)) return failf("{}: bad dynamic string table", path);
    std::vector<std::string> out;
    for (size_t off = 0; off + sizeof(Elf64_Dyn) <= dyn.sh_size; off += sizeof(Elf64_Dyn)) {
      Elf64_Dyn d;
      std::memcpy(&d, file.data() + dyn.sh_offset + off, sizeof(d));
      if (d.d_tag == DT_NULL) break;
      if (d.d_tag != DT_NEEDED) continue;
      if (d.d_un.d_val >= str.sh_size) return failf("{}: bad DT_NEEDED offset", path);
      const char* s = file.data() + str.sh_offset + d.d_un.d_val;
      out.emplace_back(s, strnlen(s, str.sh_size - d.d_un.d_val));
    }
    return out;
  }
  return std::vector<std::string>{};  // statically linked
}

// `allowed`: a library the binary uses directly (the waypoint's route regexes are RE2).
void expect_no_grpc(const std::string& binary, std::string_view allowed = {}) {
  auto path = testing::bin_path(binary);
  auto libs = needed_libraries(path);
  ASSERT_TRUE(libs) << libs.error().message;
  ASSERT_FALSE(libs->empty()) << path << " has no DT_NEEDED entries: not the dynamic build?";
  for (const auto& lib : *libs) {
    for (std::string_view bad :
         {"libgrpc", "libgpr", "libabsl", "libupb", "libcares", "libre2", "libaddress_sorting"}) {
      if (bad == allowed) continue;
      EXPECT_FALSE(lib.starts_with(bad)) << path << " needs " << lib;
    }
  }
}

TEST(NoGrpcLink, Ztunnel) { expect_no_grpc("ztunnel"); }
TEST(NoGrpcLink, Waypoint) { expect_no_grpc("waypoint", "libre2"); }

// With ZT_STATIC_DEPS (the default outside the sanitizer build) ztunnel maps no shared library
// but glibc's: OpenSSL, nghttp2, protobuf, yaml-cpp, libbpf, libstdc++ are linked in
// (cmake/ZtStaticDeps.cmake; issue 7's ztunnel RSS target).
TEST(StaticLink, ZtunnelNeedsOnlyGlibc) {
#ifdef ZT_TEST_STATIC_DEPS
  auto path = testing::bin_path("ztunnel");
  auto libs = needed_libraries(path);
  ASSERT_TRUE(libs) << libs.error().message;
  for (const auto& lib : *libs) {
    bool glibc = false;
    for (std::string_view ok : {"libc.so", "libm.so", "ld-linux", "libpthread.so", "libdl.so"}) {
      glibc = glibc || lib.starts_with(ok);
    }
    EXPECT_TRUE(glibc) << path << " needs " << lib;
  }
#else
  GTEST_SKIP()
      << "built without ZT_STATIC_DEPS (or with sanitizers): ztunnel links shared libraries";
#endif
}

}  // namespace
}  // namespace zt
