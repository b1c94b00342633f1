// See memory_service.h.
#include "daemon/memory/memory_service.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/memory/memory_requests.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {
namespace {

constexpr uint64_t kStreamChunk = 1 << 20;

// All of /proc/PID/maps of the process behind `proc`.
absl::Status ReadMaps(const ProcDir& proc, std::string* text) {
  const std::string path = absl::StrCat("/proc/", proc.pid(), "/maps");
  UniqueFd fd(openat(proc.fd(), "maps", O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("Maps: open(", path, ")"));
  char buffer[16384];
  for (;;) {
    ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return ErrnoStatus(errno, absl::StrCat("Maps: read(", path, ")"));
    }
    if (n == 0) return absl::OkStatus();
    text->append(buffer, n);
  }
}

}  // namespace

absl::StatusOr<std::vector<procwarp::v1::Mapping>> ParseMaps(
    absl::string_view text) {
  std::vector<procwarp::v1::Mapping> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    // start-end perms offset dev inode [path]
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::MaxSplits(' ', 5), absl::SkipEmpty());
    if (fields.size() < 5) {
      return absl::InternalError(absl::StrCat("unparsable maps line '", line, "'"));
    }
    std::pair<absl::string_view, absl::string_view> range =
        absl::StrSplit(fields[0], '-');
    procwarp::v1::Mapping mapping;
    uint64_t start = 0, end = 0, offset = 0, inode = 0;
    if (!absl::SimpleHexAtoi(range.first, &start) ||
        !absl::SimpleHexAtoi(range.second, &end) ||
        !absl::SimpleHexAtoi(fields[2], &offset) ||
        !absl::SimpleAtoi(fields[4], &inode)) {
      return absl::InternalError(absl::StrCat("unparsable maps line '", line, "'"));
    }
    mapping.set_start(start);
    mapping.set_end(end);
    mapping.set_permissions(std::string(fields[1]));
    mapping.set_offset(offset);
    mapping.set_device(std::string(fields[3]));
    mapping.set_inode(inode);
    if (fields.size() > 5) {
      mapping.set_path(std::string(absl::StripLeadingAsciiWhitespace(fields[5])));
    }
    out.push_back(std::move(mapping));
  }
  return out;
}

grpc::Status MemoryService::Allocate(grpc::ServerContext* context,
                                     const procwarp::v1::AllocateRequest* request,
                                     procwarp::v1::AllocateResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(int prot, CheckAllocateRequest(*request));
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    ASSIGN_OR_RETURN(uint64_t address,
                     thread->Map(caller, request->size(), prot, "Allocate"));
    absl::StatusOr<procwarp::v1::Pointer> pointer =
        table_->AddPointer(thread, address, request->size());
    if (!pointer.ok()) {
      // Past the pointer limit (or the thread went): nothing may stay mapped
      // without a handle to free it.
      thread->Unmap(caller, address, request->size()).IgnoreError();
      return pointer.status();
    }
    *response->mutable_pointer() = *std::move(pointer);
    return absl::OkStatus();
  });
}

grpc::Status MemoryService::Read(grpc::ServerContext* context,
                                 const procwarp::v1::ReadMemoryRequest* request,
                                 procwarp::v1::ReadMemoryResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(ResolvedPointer p,
                     table_->FindPointer(request->pointer_id(), caller));
    RETURN_IF_ERROR(CheckReadRequest(p.pointer, *request));
    std::string* data = response->mutable_data();
    data->resize(request->length());
    return p.thread->ReadMemory(caller, p.pointer.address() + request->offset(),
                                data->data(), data->size());
  });
}

grpc::Status MemoryService::ReadStream(
    grpc::ServerContext* context, const procwarp::v1::ReadMemoryRequest* request,
    grpc::ServerWriter<procwarp::v1::ReadMemoryChunk>* writer) {
  return WithStreamCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(ResolvedPointer p,
                     table_->FindPointer(request->pointer_id(), caller));
    RETURN_IF_ERROR(CheckPointerRange(p.pointer, request->offset(),
                                      request->length(), "ReadStream"));
    // One message, reused: its buffer is allocated (and faulted in) once.
    procwarp::v1::ReadMemoryChunk chunk;
    for (uint64_t done = 0; done < request->length();) {
      uint64_t n = std::min(kStreamChunk, request->length() - done);
      uint64_t offset = request->offset() + done;
      chunk.set_offset(offset);
      std::string* data = chunk.mutable_data();
      data->resize(n);
      RETURN_IF_ERROR(p.thread->ReadMemory(
          caller, p.pointer.address() + offset, data->data(), n));
      if (!writer->Write(chunk)) {
        return absl::CancelledError("ReadStream: the client went away");
      }
      done += n;
    }
    return absl::OkStatus();
  });
}

absl::Status MemoryService::WriteOne(
    const Identity& caller, const procwarp::v1::WriteMemoryRequest& request,
    procwarp::v1::WriteMemoryResponse* response) {
  ASSIGN_OR_RETURN(ResolvedPointer p,
                   table_->FindPointer(request.pointer_id(), caller));
  RETURN_IF_ERROR(CheckPointerRange(p.pointer, request.offset(),
                                    request.data().size(), "Write"));
  RETURN_IF_ERROR(p.thread->WriteMemory(
      caller, p.pointer.address() + request.offset(), request.data()));
  response->set_written(response->written() + request.data().size());
  return absl::OkStatus();
}

grpc::Status MemoryService::Write(grpc::ServerContext* context,
                                  const procwarp::v1::WriteMemoryRequest* request,
                                  procwarp::v1::WriteMemoryResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    return WriteOne(caller, *request, response);
  });
}

grpc::Status MemoryService::WriteStream(
    grpc::ServerContext* context,
    grpc::ServerReader<procwarp::v1::WriteMemoryRequest>* reader,
    procwarp::v1::WriteMemoryResponse* response) {
  return WithStreamCaller(*callers_, context, [&](const Identity& caller) {
    procwarp::v1::WriteMemoryRequest request;
    while (reader->Read(&request)) {
      RETURN_IF_ERROR(WriteOne(caller, request, response));
    }
    return absl::OkStatus();
  });
}

grpc::Status MemoryService::Free(grpc::ServerContext* context,
                                 const procwarp::v1::FreeRequest* request,
                                 procwarp::v1::FreeResponse*) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(ResolvedPointer p,
                     table_->RemovePointer(request->pointer_id(), caller));
    return p.thread->Unmap(caller, p.pointer.address(), p.pointer.size());
  });
}

grpc::Status MemoryService::Maps(grpc::ServerContext* context,
                                 const procwarp::v1::MapsRequest* request,
                                 procwarp::v1::MapsResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    std::string text;
    // Read as root, then judged (ActOnProcess): the maps are the caller's
    // only if it could have read them itself at that moment.
    RETURN_IF_ERROR(thread->ActOnProcess(
        caller, [&](const ProcDir& proc) { return ReadMaps(proc, &text); }));
    ASSIGN_OR_RETURN(auto mappings, ParseMaps(text));
    for (auto& m : mappings) *response->add_mappings() = std::move(m);
    return absl::OkStatus();
  });
}

absl::Status MemoryService::DirectCopy(
    const Session& session, const procwarp::v1::DirectMemoryRequest& request,
    bool to_client, procwarp::v1::DirectMemoryResponse* response) {
  const char* call = to_client ? "ReadToClient" : "WriteFromClient";
  RETURN_IF_ERROR(RequireLocal(session, absl::StrCat("Memory.", call),
                               to_client ? "Memory.ReadStream or Memory.Read"
                                         : "Memory.WriteStream or Memory.Write"));
  const Identity& caller = session.identity;
  ASSIGN_OR_RETURN(ResolvedPointer p,
                   table_->FindPointer(request.pointer_id(), caller));
  RETURN_IF_ERROR(CheckDirectMemoryRequest(p.pointer, request, call));
  if (caller.pid <= 0 || session.peer_pidfd == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        call, ": only a local client (whose pid the daemon knows) can be "
              "copied to directly; use ",
        to_client ? "Read/ReadStream" : "Write/WriteStream"));
  }
  if (!PeerAlive(*session.peer_pidfd)) {
    return absl::FailedPreconditionError(absl::StrCat(
        call, ": the client process ", caller.pid, " has exited"));
  }
  if (request.length() == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(uint64_t scratch, p.thread->ScratchPage(caller));

  // The thread's end is the "local" side of its process_vm_* call, the
  // client's the "remote" one: process_vm_writev puts thread memory into the
  // client (ReadToClient), process_vm_readv takes client memory into the
  // thread (WriteFromClient). The thread makes the call, with its own
  // credentials (an agent's are its owner's; an attached process's are ones
  // its owner could ptrace), so the kernel decides whether it may reach the
  // client; the daemon's privileges are not involved (whatever answers on an
  // agent's socket, its replies only shape this call's result).
  const uint64_t thread_base = p.pointer.address() + request.offset();
  uint64_t done = 0;
  while (done < request.length()) {
    const uint64_t left = request.length() - done;
    iovec iovs[2] = {
        {reinterpret_cast<void*>(thread_base + done), left},
        {reinterpret_cast<void*>(request.client_address() + done), left}};
    absl::Status wrote = p.thread->WriteMemory(
        caller, scratch,
        absl::string_view(reinterpret_cast<const char*>(iovs), sizeof(iovs)));
    if (absl::IsFailedPrecondition(wrote)) {
      return absl::FailedPreconditionError(absl::StrCat(
          call, ": the scratch page of ", p.thread->Name(), " at 0x",
          absl::Hex(scratch), " is no longer writable"));
    }
    RETURN_IF_ERROR(p.thread->ExplainError(wrote));
    const ThreadSyscall copy = ThreadSyscall::Of(
        to_client ? SYS_process_vm_writev : SYS_process_vm_readv,
        {static_cast<uint64_t>(caller.pid), scratch, 1,
         scratch + sizeof(iovec), 1, 0});
    std::vector<ThreadSyscallResult> results;
    RETURN_IF_ERROR(p.thread->ExplainError(p.thread->Syscalls(
        caller, absl::MakeConstSpan(&copy, 1), &results)));
    int64_t r = results[0].value;
    if (r == -EPERM || r == -EACCES) {
      return absl::FailedPreconditionError(absl::StrCat(
          call, ": ", p.thread->Name(), " (uid ", p.thread->owner().uid,
          ") may not access client process ", caller.pid,
          " (the kernel refused process_vm_*: EPERM); use ",
          to_client ? "Read/ReadStream" : "Write/WriteStream"));
    }
    if (r == -ESRCH) {
      return absl::FailedPreconditionError(absl::StrCat(
          call, ": the client process ", caller.pid, " has exited"));
    }
    if (r == -EFAULT || r == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          call, ": copied ", done, " of ", request.length(),
          " bytes; then either pointer ", p.pointer.id(), " at offset ",
          request.offset() + done, " or the client's address 0x",
          absl::Hex(request.client_address() + done),
          " is not mapped with the access needed"));
    }
    if (r < 0) {
      return ErrnoStatus(static_cast<int>(-r),
                         absl::StrCat(call, ": ",
                                      to_client ? "process_vm_writev"
                                                : "process_vm_readv",
                                      " in ", p.thread->Name(), " (client pid ",
                                      caller.pid, ", length ", left, ")"));
    }
    done += static_cast<uint64_t>(r);
  }
  // The pid named the client during the copy only if the client did not
  // exit meanwhile (a pid is reused only after its process is gone).
  if (!PeerAlive(*session.peer_pidfd)) {
    return absl::FailedPreconditionError(absl::StrCat(
        call, ": the client process ", caller.pid, " exited during the copy"));
  }
  response->set_copied(done);
  if (!to_client) {
    Audit("memory_write_direct", caller,
          {{"THREAD_ID", p.thread->id()},
           {"POINTER_ID", p.pointer.id()},
           {"LENGTH", absl::StrCat(done)}});
  }
  return absl::OkStatus();
}

grpc::Status MemoryService::ReadToClient(
    grpc::ServerContext* context, const procwarp::v1::DirectMemoryRequest* request,
    procwarp::v1::DirectMemoryResponse* response) {
  return WithSession(*callers_, context, [&](const Session& session) {
    return DirectCopy(session, *request, /*to_client=*/true, response);
  });
}

grpc::Status MemoryService::WriteFromClient(
    grpc::ServerContext* context, const procwarp::v1::DirectMemoryRequest* request,
    procwarp::v1::DirectMemoryResponse* response) {
  return WithSession(*callers_, context, [&](const Session& session) {
    return DirectCopy(session, *request, /*to_client=*/false, response);
  });
}

}  // namespace procwarp
