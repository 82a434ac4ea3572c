// taken_board.h on Linux: a memfd of one page, mapped shared by both processes; the worker
// inherits it as descriptor 4 (platform/process_posix.cc).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>

#include "taken_board.h"

namespace isapi::channel {

namespace {

constexpr int kWorkerBoardFd = 4;
constexpr size_t kBoardSize = 4096;

std::atomic<uint32_t>* map_board(int fd) {
  void* p = ::mmap(nullptr, kBoardSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : static_cast<std::atomic<uint32_t>*>(p);
}

}  // namespace

static_assert(std::atomic<uint32_t>::is_always_lock_free, "the board is shared between processes");

TakenBoard::~TakenBoard() {
  if (count_) ::munmap(count_, kBoardSize);
}

bool TakenBoard::create(NativeHandle& childHandle, std::string& childAddress) {
  int fd = ::memfd_create("isapi-taken-board", MFD_CLOEXEC);
  if (fd < 0) return false;
  if (::ftruncate(fd, kBoardSize) != 0 || !(count_ = map_board(fd))) {
    ::close(fd);
    return false;
  }
  childHandle = fd;
  childAddress = "fd:" + std::to_string(kWorkerBoardFd);
  return true;
}

bool TakenBoard::open(const std::string& address) {
  if (address.rfind("fd:", 0) != 0) return false;
  int fd = std::atoi(address.c_str() + 3);
  count_ = map_board(fd);
  ::close(fd);  // the mapping stays; the descriptor must not leak into the user's children
  return count_ != nullptr;
}

}  // namespace isapi::channel
