#include "meshd/manifest/source.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string_view>

#include <fmt/format.h>

#include "common/base/log.h"
#include "common/fs/inotify.h"

namespace zt::meshd::manifest {
namespace {

namespace stdfs = std::filesystem;

bool hidden(const stdfs::path& p) {
  auto name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

bool is_manifest(const stdfs::path& p) {
  auto ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml";
}

// Every manifest file below `dir` (relative paths, sorted). Hidden entries are skipped: a
// ConfigMap volume holds each file twice, once under a hidden "..<timestamp>" directory.
Result<std::vector<std::string>> list_manifests(const stdfs::path& dir) {
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) return fail(ec, dir.string() + ": not a directory");
  std::vector<std::string> files;
  stdfs::recursive_directory_iterator it(dir, stdfs::directory_options::follow_directory_symlink,
                                         ec);
  if (ec) return fail(ec, "listing " + dir.string());
  for (auto end = stdfs::recursive_directory_iterator(); it != end; it.increment(ec)) {
    if (ec) return fail(ec, "listing " + dir.string());
    if (hidden(it->path())) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!is_manifest(it->path()) || !it->is_regular_file(ec)) continue;
    files.push_back(stdfs::relative(it->path(), dir, ec).generic_string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::optional<std::string> read_file(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return content.str();
}

// A file modified this close to when it was read may have changed again within the same mtime
// tick; its (size, mtime) then proves nothing and its content is compared instead.
constexpr auto kRacyWindow = std::chrono::seconds(2);

}  // namespace

const ParsedManifest* ManifestSource::parse_file(const std::string& file) {
  auto path = directory_ / file;
  std::error_code ec;
  auto size = stdfs::file_size(path, ec);  // follows symlinks (ConfigMap volumes)
  auto mtime = ec ? stdfs::file_time_type{} : stdfs::last_write_time(path, ec);
  auto cached = files_.find(file);
  if (!ec && cached != files_.end() && cached->second.size == size &&
      cached->second.mtime == mtime && mtime + kRacyWindow < cached->second.read_at) {
    return &cached->second.parsed;
  }
  auto read_at = stdfs::file_time_type::clock::now();
  auto text = read_file(path);
  if (!text) return nullptr;
  size_t hash = std::hash<std::string_view>{}(*text);
  if (ec) {  // stat failed but the read worked: never trust the stamps of this entry
    size = text->size();
    mtime = read_at;
  }
  if (cached != files_.end() && cached->second.size == text->size() &&
      cached->second.hash == hash) {
    cached->second.size = size;
    cached->second.mtime = mtime;
    cached->second.read_at = read_at;
    return &cached->second.parsed;
  }
  auto& entry = files_[file];
  entry = FileEntry{size, mtime, read_at, hash, parse_manifest(*text, file)};
  return &entry.parsed;
}

ManifestSource::ManifestSource(std::filesystem::path directory)
    : directory_(std::move(directory)), current_(std::make_shared<const ObjectSet>()) {}

LoadResult ManifestSource::reload() {
  LoadResult result;
  auto files = list_manifests(directory_);
  if (!files) {
    result.errors.push_back(ManifestError{"", 0, std::nullopt, files.error().describe()});
    result.objects = current_;
    return result;
  }

  std::map<ObjectKey, Object> next;
  std::map<ObjectKey, Origin> next_origins;
  // Last-good versions to restore once every file is read (a valid definition elsewhere wins);
  // failing that, the error's stand-in (an unreadable AuthorizationPolicy fails closed).
  std::vector<ObjectKey> keep;
  std::vector<std::pair<Origin, const ManifestError*>> stand_ins;
  std::set<ObjectKey> next_stand_ins;
  // Objects whose document was read this time and says what stands in for it (a new stand-in,
  // or nothing needed): an earlier stand-in of theirs goes.
  std::set<ObjectKey> reread;

  auto keep_file = [&](const std::string& file) {
    for (const auto& [key, origin] : origins_) {
      if (origin.file == file) keep.push_back(key);
    }
  };

  for (const auto& file : *files) {
    const auto* cached = parse_file(file);
    if (!cached) {
      result.errors.push_back(ManifestError{file, 0, std::nullopt, file + ": cannot read"});
      keep_file(file);
      continue;
    }
    const auto& parsed = *cached;
    if (parsed.unreadable) keep_file(file);
    for (const auto& error : parsed.errors) {
      if (error.object) {
        keep.push_back(*error.object);
        if (error.fallback || error.nothing_to_stand_in) reread.insert(*error.object);
        if (error.fallback) stand_ins.emplace_back(Origin{file, error.document}, &error);
      } else {
        for (const auto& [key, origin] : origins_) {
          if (origin.file == file && origin.document == error.document) keep.push_back(key);
        }
      }
      result.errors.push_back(error);
    }
    for (size_t i = 0; i < parsed.objects.size(); ++i) {
      auto key = key_of(parsed.objects[i]);
      size_t document = parsed.documents[i];
      if (auto it = next_origins.find(key); it != next_origins.end()) {
        result.errors.push_back(
            ManifestError{file, document, key,
                          fmt::format("{}: {}: already defined in {}; this definition is ignored",
                                      file, key.describe(), it->second.file)});
        continue;
      }
      next_origins[key] = Origin{file, document};
      next.emplace(std::move(key), parsed.objects[i]);
    }
  }
  // Forget the parses of files that are gone (a file that could not be read keeps its entry).
  for (auto it = files_.begin(); it != files_.end();) {
    it = std::binary_search(files->begin(), files->end(), it->first) ? std::next(it)
                                                                     : files_.erase(it);
  }

  for (const auto& key : keep) {
    if (next.count(key)) continue;
    auto previous = by_key_.find(key);
    if (previous == by_key_.end()) continue;
    // A stand-in is not a good version: the latest document's stand-in (if any) replaces it. One
    // whose document could not be read far enough this time (the file unreadable, not YAML, a
    // half-typed action) stays.
    if (stand_ins_.contains(key)) {
      if (reread.contains(key)) continue;
      next.emplace(key, previous->second);
      next_origins[key] = origins_[key];
      next_stand_ins.insert(key);
      continue;
    }
    ZT_LOG_WARN("component=manifest keeping the last good version of {}", key.describe());
    next.emplace(key, previous->second);
    next_origins[key] = origins_[key];
  }
  for (const auto& [origin, error] : stand_ins) {
    if (next.count(*error->object)) continue;
    ZT_LOG_ERROR("component=manifest {} has no good version: it fails closed until fixed",
                 error->object->describe());
    next.emplace(*error->object, *error->fallback);
    next_origins[*error->object] = origin;
    next_stand_ins.insert(*error->object);
  }
  stand_ins_ = std::move(next_stand_ins);

  result.changed = next != by_key_;
  if (result.changed) {
    auto set = std::make_shared<ObjectSet>();
    for (const auto& [key, object] : next) set->put(object);
    current_ = std::move(set);
    by_key_ = std::move(next);
  }
  origins_ = std::move(next_origins);
  result.objects = current_;
  return result;
}

// --- ManifestWatcher ---------------------------------------------------------------------------

struct ManifestWatcher::Impl {
  Impl(asio::any_io_executor executor, std::filesystem::path dir, Callback callback,
       std::chrono::milliseconds delay)
      : directory(std::move(dir)),
        on_change(std::move(callback)),
        debounce(delay),
        timer(executor) {}

  static constexpr uint32_t kMask =
      IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF;

  Status watch_tree(const std::filesystem::path& root) {
    auto wd = reader->add(root, kMask);
    if (!wd) return tl::unexpected(wd.error());
    directories[*wd] = root;
    std::error_code ec;
    for (stdfs::recursive_directory_iterator it(root, ec), end; !ec && it != end;
         it.increment(ec)) {
      if (hidden(it->path())) {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (!it->is_directory(ec)) continue;
      if (auto sub = reader->add(it->path(), kMask)) directories[*sub] = it->path();
    }
    return {};
  }

  void on_events(const std::vector<fs::InotifyEvent>& events) {
    bool changed = false;
    for (const auto& event : events) {
      if (event.mask & IN_IGNORED) {
        directories.erase(event.watch);
        continue;
      }
      if (event.mask & IN_Q_OVERFLOW) changed = true;
      // Hidden names count too: a ConfigMap update is a rename of the "..data" symlink. Editors'
      // temp files cost at most one reload that finds nothing changed.
      if ((event.mask & IN_ISDIR) && (event.mask & (IN_CREATE | IN_MOVED_TO))) {
        auto parent = directories.find(event.watch);
        if (parent != directories.end() && !event.name.empty() && event.name[0] != '.') {
          if (auto status = watch_tree(parent->second / event.name); !status) {
            ZT_LOG_WARN("component=manifest cannot watch {}: {}",
                        (parent->second / event.name).string(), status.error().describe());
          }
        }
      }
      if (event.mask & kMask) changed = true;
    }
    if (changed) arm();
  }

  void arm() {
    timer.expires_after(debounce);
    timer.async_wait([weak = weak_self](const error_code& ec) {
      if (ec) return;  // re-armed or stopped
      if (auto self = weak.lock()) {
        if (self->reader->is_open() && self->on_change) self->on_change();
      }
    });
  }

  std::filesystem::path directory;
  Callback on_change;
  std::chrono::milliseconds debounce;
  asio::steady_timer timer;
  std::shared_ptr<fs::InotifyReader> reader;
  std::map<int, std::filesystem::path> directories;
  std::weak_ptr<Impl> weak_self;
};

ManifestWatcher::ManifestWatcher(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

ManifestWatcher::~ManifestWatcher() { stop(); }

Result<std::unique_ptr<ManifestWatcher>> ManifestWatcher::start(
    asio::any_io_executor executor, std::filesystem::path directory, Callback on_change,
    std::chrono::milliseconds debounce) {
  auto reader = fs::InotifyReader::create(executor);
  if (!reader) return tl::unexpected(reader.error());
  auto impl =
      std::make_shared<Impl>(executor, std::move(directory), std::move(on_change), debounce);
  impl->weak_self = impl;
  impl->reader = *reader;
  if (auto status = impl->watch_tree(impl->directory); !status) {
    impl->reader->close();
    return tl::unexpected(wrap(status.error(), "watching the manifest directory"));
  }
  std::weak_ptr<Impl> weak = impl;
  impl->reader->start(
      [weak](const std::vector<fs::InotifyEvent>& events) {
        if (auto self = weak.lock()) self->on_events(events);
      },
      [weak](const error_code& ec) {
        if (auto self = weak.lock()) {
          ZT_LOG_ERROR("component=manifest stopped watching {}: {}", self->directory.string(),
                       ec.message());
        }
      });
  return std::unique_ptr<ManifestWatcher>(new ManifestWatcher(std::move(impl)));
}

void ManifestWatcher::stop() {
  impl_->reader->close();
  impl_->timer.cancel();
}

}  // namespace zt::meshd::manifest
