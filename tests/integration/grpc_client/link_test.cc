// ztunnel and the waypoint speak gRPC through common/grpc: neither binary may need a gRPC,
// abseil, upb, c-ares or re2 shared library (they cost several MiB of resident memory), and the
// static build of ztunnel needs nothing but glibc. Reads the DT_NEEDED entries from the ELF
// dynamic section of build/bin/<binary>. Also: ztunnel's code is laid out in the order of
// ztunnel/text-order.txt (its symbol table).
#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <unordered_map>
#include <vector>

#include <elf.h>
#include <gtest/gtest.h>

#include "common/base/result.h"
#include "tests/support/daemon.h"

namespace zt {
namespace {

// A 64-bit little-endian ELF file read whole, its header checked, with bounds-checked reads of
// its section headers, of records and of strings.
class ElfFile {
 public:
  static Result<ElfFile> read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return failf("cannot open {}", path);
    ElfFile f;
    f.path_ = path;
    f.data_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!f.contains(0, sizeof(Elf64_Ehdr))) return failf("{}: too small for an ELF header", path);
    std::memcpy(&f.eh_, f.data_.data(), sizeof(f.eh_));
    if (std::memcmp(f.eh_.e_ident, ELFMAG, SELFMAG) != 0 || f.eh_.e_ident[EI_CLASS] != ELFCLASS64 ||
        f.eh_.e_ident[EI_DATA] != ELFDATA2LSB)
      return failf("{}: not a 64-bit little-endian ELF file", path);
    if (f.eh_.e_shentsize != sizeof(Elf64_Shdr) ||
        !f.contains(f.eh_.e_shoff, size_t{f.eh_.e_shnum} * sizeof(Elf64_Shdr)) ||
        f.eh_.e_shstrndx >= f.eh_.e_shnum)
      return failf("{}: bad section header table", path);
    return f;
  }

  const std::string& path() const { return path_; }
  size_t sections() const { return eh_.e_shnum; }
  Elf64_Shdr section(size_t i) const { return record<Elf64_Shdr>(eh_.e_shoff, i); }
  // The name of section `sh` (from the section header string table).
  std::string name(const Elf64_Shdr& sh) const {
    return string_at(section(eh_.e_shstrndx), sh.sh_name);
  }
  // Whether section `sh`'s contents lie in the file.
  bool holds(const Elf64_Shdr& sh) const { return contains(sh.sh_offset, sh.sh_size); }
  // Record `i` of type T in a table at `offset`; the caller checks the table's bounds.
  template <typename T>
  T record(size_t offset, size_t i) const {
    T t;
    std::memcpy(&t, data_.data() + offset + i * sizeof(T), sizeof(t));
    return t;
  }
  // The NUL-terminated string at `off` in string table `table`; empty when out of bounds.
  std::string string_at(const Elf64_Shdr& table, size_t off) const {
    if (!holds(table) || off >= table.sh_size) return {};
    const char* s = data_.data() + table.sh_offset + off;
    return std::string(s, strnlen(s, table.sh_size - off));
  }

 private:
  bool contains(size_t off, size_t len) const {
    return off <= data_.size() && len <= data_.size() - off;
  }

  std::string path_;
  std::string data_;
  Elf64_Ehdr eh_{};
};

// The DT_NEEDED names of an ELF file: its SHT_DYNAMIC section and the string table its sh_link
// names.
Result<std::vector<std::string>> needed_libraries(const std::string& path) {
  auto elf = ElfFile::read(path);
  if (!elf) return tl::unexpected(elf.error());
  for (size_t i = 0; i < elf->sections(); ++i) {
    const Elf64_Shdr dyn = elf->section(i);
    if (dyn.sh_type != SHT_DYNAMIC) continue;
    if (dyn.sh_link >= elf->sections() || !elf->holds(dyn))
      return failf("{}: bad dynamic section", path);
    const Elf64_Shdr str = elf->section(dyn.sh_link);
    if (!elf->holds(str)) return failf("{}: bad dynamic string table", path);
    std::vector<std::string> out;
    for (size_t k = 0; k < dyn.sh_size / sizeof(Elf64_Dyn); ++k) {
      const auto d = elf->record<Elf64_Dyn>(dyn.sh_offset, k);
      if (d.d_tag == DT_NULL) break;
      if (d.d_tag != DT_NEEDED) continue;
      if (d.d_un.d_val >= str.sh_size) return failf("{}: bad DT_NEEDED offset", path);
      out.push_back(elf->string_at(str, d.d_un.d_val));
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

// The functions of an ELF file's symbol table (SHT_SYMTAB) by name (address, size), and the
// address range of its .text section.
struct Functions {
  std::unordered_map<std::string, std::pair<uint64_t, uint64_t>> by_name;
  uint64_t text_begin = 0, text_end = 0;
};

// Unused when the layout is not checked (ZT_TEST_TEXT_ORDER undefined).
[[maybe_unused]] Result<Functions> functions(const std::string& path) {
  auto elf = ElfFile::read(path);
  if (!elf) return tl::unexpected(elf.error());
  Functions out;
  for (size_t i = 0; i < elf->sections(); ++i) {
    const Elf64_Shdr sh = elf->section(i);
    if (elf->name(sh) == ".text") {
      out.text_begin = sh.sh_addr;
      out.text_end = sh.sh_addr + sh.sh_size;
    }
    if (sh.sh_type != SHT_SYMTAB) continue;
    if (sh.sh_entsize != sizeof(Elf64_Sym) || sh.sh_link >= elf->sections() || !elf->holds(sh))
      return failf("{}: bad symbol table", path);
    const Elf64_Shdr strtab = elf->section(sh.sh_link);
    for (size_t k = 0; k < sh.sh_size / sizeof(Elf64_Sym); ++k) {
      const auto sym = elf->record<Elf64_Sym>(sh.sh_offset, k);
      if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF) continue;
      out.by_name.try_emplace(elf->string_at(strtab, sym.st_name), sym.st_value, sym.st_size);
    }
  }
  if (out.by_name.empty()) return failf("{}: no symbol table (stripped?)", path);
  if (out.text_end == 0) return failf("{}: no .text section", path);
  return out;
}

// With lld 15+ (cmake/ZtStaticDeps.cmake, ZT_TEXT_ORDER) ztunnel's code starts with the functions
// of ztunnel/text-order.txt, packed together, so the code a run executes is resident and the
// rest is not (issue 7's ztunnel RSS target). Linked in the default order, the same functions
// spread over all of .text.
TEST(StaticLink, ZtunnelCodeInProfileOrder) {
#ifdef ZT_TEST_TEXT_ORDER
  std::ifstream list(ZT_TEST_TEXT_ORDER);
  ASSERT_TRUE(list) << "cannot open " << ZT_TEST_TEXT_ORDER;
  auto fns = functions(testing::bin_path("ztunnel"));
  ASSERT_TRUE(fns) << fns.error().message;
  size_t listed = 0, present = 0;
  uint64_t lo = UINT64_MAX, hi = 0;
  std::string first;
  for (std::string name; std::getline(list, name);) {
    ++listed;
    auto it = fns->by_name.find(name);
    if (it == fns->by_name.end()) continue;
    ++present;
    if (first.empty()) first = name;
    lo = std::min(lo, it->second.first);
    hi = std::max(hi, it->second.first + it->second.second);
  }
  ASSERT_GT(listed, 1000u) << ZT_TEST_TEXT_ORDER << " is too short to be a profile";
  // Code changes rename functions, and renamed ones land in the unordered rest: with fewer than
  // half of the names left, most of what the list packed is spread out again.
  EXPECT_GE(present * 2, listed)
      << present << " of the " << listed << " functions of " << ZT_TEST_TEXT_ORDER
      << " are in ztunnel: the list is stale, regenerate it with scripts/text-order.sh";
  ASSERT_FALSE(first.empty());
  // The first listed function opens .text (lld puts ordered sections first; allow alignment).
  EXPECT_LT(fns->by_name[first].first - fns->text_begin, 64u)
      << first << " is not at the start of .text: ztunnel was not linked in the listed order";
  const double text = static_cast<double>(fns->text_end - fns->text_begin);
  const double span = static_cast<double>(hi - lo);
  // About 58 % with the current list (whole-object sections of OpenSSL and protobuf come along
  // with the functions of theirs that run); about 100 % in the default order.
  EXPECT_LT(span / text, 0.75) << "the listed functions span " << span / text * 100
                               << " % of .text: not packed together";
#elif defined(ZT_TEST_TEXT_ORDER_NO_LLD)
  FAIL() << "ztunnel was linked in the default order because no lld 15 or later was found: "
            "apt-get install lld-16 (scripts/setup.sh does), or configure with -DZT_TEXT_ORDER=OFF";
#else
  GTEST_SKIP() << "ztunnel is linked in the default order: built with -DZT_TEXT_ORDER=OFF, "
                  "without ZT_STATIC_DEPS, or with sanitizers";
#endif
}

}  // namespace
}  // namespace zt
