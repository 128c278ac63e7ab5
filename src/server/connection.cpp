#include "connection.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>

namespace icae::server {

namespace {

// The numeric address and port of a socket address; false for anything but IPv4/IPv6.
bool address_of(const sockaddr_storage& a, std::string& host, int& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(a);
    if (!inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf)) return false;
    port = ntohs(in.sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto& in = reinterpret_cast<const sockaddr_in6&>(a);
    if (!inet_ntop(AF_INET6, &in.sin6_addr, buf, sizeof buf)) return false;
    port = ntohs(in.sin6_port);
  } else {
    return false;
  }
  host = buf;
  return true;
}

bool has_address(int fd, bool peer, const std::string& host, int port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  const int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                      : getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  std::string h;
  int p = -1;
  return rc == 0 && address_of(a, h, p) && p == port && h == host;
}

}  // namespace

ConnectionWatch::ConnectionWatch(const std::string& local_addr, int local_port, const std::string& remote_addr,
                                 int remote_port) {
  if (local_port <= 0 || remote_port <= 0) return;
  // POSIX directory calls: std::filesystem's iteration is not safe beside libtorch (docs).
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return;
  const int own = dirfd(dir);
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == own) continue;
    const int s = static_cast<int>(fd);
    if (has_address(s, false, local_addr, local_port) && has_address(s, true, remote_addr, remote_port)) {
      fd_ = s;
      break;
    }
  }
  closedir(dir);
}

bool ConnectionWatch::closed() const {
  if (fd_ < 0) return false;
  if (closed_.load()) return true;
  pollfd p{};
  p.fd = fd_;
  p.events = POLLRDHUP;
  // POLLRDHUP: the peer sent FIN. A request's body has been read by now, so a pipelined next
  // request shows as POLLIN only, not as a close.
  if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) closed_.store(true);
  return closed_.load();
}

}  // namespace icae::server
