#include "icae/io/data_files.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "icae/util/error.h"

namespace icae {

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Data files under a folder, recursively, with POSIX calls: libtorch.so exports its own
// (newer-ABI) std::filesystem symbols, and walking directories through them has crashed here.
void walk(const std::string& dir, std::vector<std::string>& out) {
  DIR* d = ::opendir(dir.c_str());
  ICAE_CHECK(d != nullptr, ErrorKind::Io, dir + ": cannot read folder: " + std::strerror(errno));
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) {
    const std::string path = dir + "/" + n;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) walk(path, out);
    else if (S_ISREG(st.st_mode) && (ends_with(n, ".txt") || ends_with(n, ".jsonl"))) out.push_back(path);
  }
}

}  // namespace

std::vector<std::string> list_data_files(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    struct stat st;
    ICAE_CHECK(::stat(p.c_str(), &st) == 0, ErrorKind::Io, p + ": no such file or folder");
    if (S_ISDIR(st.st_mode)) {
      std::vector<std::string> found;
      walk(p, found);
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else {
      out.push_back(p);
    }
  }
  ICAE_CHECK(!out.empty(), ErrorKind::BadInput, "no data files (.txt or .jsonl) found");
  return out;
}

}  // namespace icae
