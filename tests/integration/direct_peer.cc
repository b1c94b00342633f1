// direct_peer: a client of procwarpd run as another uid by
// memory_direct_test, for what only a separate process can show: that
// Memory.ReadToClient/WriteFromClient always copy to and from the calling
// client's own address space, whoever else has memory at the same address.
//
// It is started as root and drops to UID (a uid-65534 process could not
// exec it from the test's runfiles under /root):
//
//   direct_peer SOCKET UID same_address ADDR   maps 1 MiB at ADDR (filled with
//       'n'), copies it into a new thread with WriteFromClient, overwrites
//       the thread's first half with 't' by a unary Write, copies it back
//       to ADDR with ReadToClient, and prints
//       "OK thread=<16 bytes> local=<first byte><last byte>".
//   direct_peer SOCKET UID persistent          creates a persistent thread with a
//       4 KiB pointer holding "from nobody", prints "OK THREAD POINTER".
// Errors print "CODE message" and exit 1.
#include <grp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"

namespace {

using procwarp::v1::Memory;
using procwarp::v1::Threads;

constexpr size_t kSize = 1 << 20;

int Fail(const std::string& what, const grpc::Status& s) {
  printf("%d %s: %s\n", static_cast<int>(s.error_code()), what.c_str(),
         s.error_message().c_str());
  return 1;
}

int Main(int argc, char** argv) {
  if (argc < 4) return 2;
  int uid = atoi(argv[2]);
  if (setgroups(0, nullptr) != 0 || setgid(uid) != 0 || setuid(uid) != 0) {
    return 3;
  }
  // Changing uid without exec leaves the process non-dumpable, which would
  // keep its own threads out; a client started as that uid would be
  // dumpable, so be one.
  prctl(PR_SET_DUMPABLE, 1);
  // From here on: SOCKET OP [ADDR].
  argv[2] = argv[1];
  argv += 1;
  argc -= 1;
  auto channel = grpc::CreateChannel(absl::StrCat("unix:", argv[1]),
                                     grpc::InsecureChannelCredentials());
  auto threads = Threads::NewStub(channel);
  auto memory = Memory::NewStub(channel);
  std::string op = argv[2];
  bool persistent = op == "persistent";
  if (!persistent && !(op == "same_address" && argc == 4)) return 2;

  procwarp::v1::CreateThreadRequest create;
  create.set_persistent(persistent);
  procwarp::v1::CreateThreadResponse created;
  grpc::ClientContext c1;
  grpc::Status s = threads->CreateThread(&c1, create, &created);
  if (!s.ok()) return Fail("CreateThread", s);
  procwarp::v1::AllocateRequest allocate;
  allocate.set_thread_id(created.thread().id());
  allocate.set_size(persistent ? 4096 : kSize);
  procwarp::v1::AllocateResponse allocated;
  grpc::ClientContext c2;
  s = memory->Allocate(&c2, allocate, &allocated);
  if (!s.ok()) return Fail("Allocate", s);
  const std::string pointer = allocated.pointer().id();

  if (persistent) {
    procwarp::v1::WriteMemoryRequest write;
    write.set_pointer_id(pointer);
    write.set_data("from nobody");
    procwarp::v1::WriteMemoryResponse written;
    grpc::ClientContext c3;
    s = memory->Write(&c3, write, &written);
    if (!s.ok()) return Fail("Write", s);
    printf("OK %s %s\n", created.thread().id().c_str(), pointer.c_str());
    return 0;
  }

  uint64_t address = strtoull(argv[3], nullptr, 0);
  void* local = mmap(reinterpret_cast<void*>(address), kSize,
                     PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (local != reinterpret_cast<void*>(address)) {
    printf("mmap at %s failed\n", argv[3]);
    return 1;
  }
  memset(local, 'n', kSize);
  procwarp::v1::DirectMemoryRequest direct;
  direct.set_pointer_id(pointer);
  direct.set_length(kSize);
  direct.set_client_address(address);
  procwarp::v1::DirectMemoryResponse copied;
  grpc::ClientContext c3;
  s = memory->WriteFromClient(&c3, direct, &copied);
  if (!s.ok()) return Fail("WriteFromClient", s);

  procwarp::v1::WriteMemoryRequest write;
  write.set_pointer_id(pointer);
  write.set_data(std::string(kSize / 2, 't'));
  procwarp::v1::WriteMemoryResponse written;
  grpc::ClientContext c4;
  s = memory->Write(&c4, write, &written);
  if (!s.ok()) return Fail("Write", s);

  // What the thread holds around the half-way mark: 't's then whatever
  // WriteFromClient put there.
  procwarp::v1::ReadMemoryRequest read;
  read.set_pointer_id(pointer);
  read.set_offset(kSize / 2 - 8);
  read.set_length(16);
  procwarp::v1::ReadMemoryResponse got;
  grpc::ClientContext c5;
  s = memory->Read(&c5, read, &got);
  if (!s.ok()) return Fail("Read", s);

  grpc::ClientContext c6;
  s = memory->ReadToClient(&c6, direct, &copied);
  if (!s.ok()) return Fail("ReadToClient", s);
  const char* bytes = static_cast<const char*>(local);
  printf("OK thread=%s local=%c%c\n", got.data().c_str(), bytes[0],
         bytes[kSize - 1]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
