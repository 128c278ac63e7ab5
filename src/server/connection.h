// Whether an HTTP client is still connected, for cancelling work nobody will read.
//
// cpp-httplib 0.11 (Debian 12's) shows a handler nothing of its connection (later versions have
// Request::is_connection_closed), but a request carries both ends' addresses: this finds the
// connection's socket among the process's descriptors by them, once, and then asks the kernel
// whether the peer has closed its side. The descriptor stays the connection's while its handler
// (or chunked content provider) runs, which is the only time closed() is called.
#pragma once
#include <atomic>
#include <string>

namespace icae::server {

class ConnectionWatch {
 public:
  // The addresses as httplib::Request has them. A connection that cannot be found is never closed.
  ConnectionWatch(const std::string& local_addr, int local_port, const std::string& remote_addr, int remote_port);
  bool found() const { return fd_ >= 0; }
  // True once the client has closed (or half-closed: HTTP clients do not) its connection. Cheap:
  // one poll() without waiting.
  bool closed() const;

 private:
  int fd_ = -1;
  mutable std::atomic<bool> closed_{false};
};

}  // namespace icae::server
