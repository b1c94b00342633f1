// See processes_service.h.
#include "daemon/process/processes_service.h"

#include <signal.h>

#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/process/process_requests.h"
#include "daemon/server/log.h"
#include "daemon/server/paging.h"
#include "daemon/util/fault_point.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

using procwarp::v1::AttachRequest;
using procwarp::v1::AttachResponse;

// Long waits wake up this often to notice a cancelled call or a passed
// deadline (the sync gRPC API has no way to be woken for either).
constexpr absl::Duration kPollInterval = absl::Milliseconds(100);

// CANCELLED / DEADLINE_EXCEEDED once the call is over for the client.
absl::Status CallEnded(const grpc::ServerContext* context) {
  if (context->IsCancelled()) return absl::CancelledError("call cancelled");
  if (absl::FromChrono(context->deadline()) <= absl::Now()) {
    return absl::DeadlineExceededError("deadline passed before the process exited");
  }
  return absl::OkStatus();
}

// What a spawned record keeps of its request, for the per-identity record
// budget: argv and labels.
size_t RecordBytes(const procwarp::v1::SpawnRequest& request) {
  size_t bytes = 0;
  for (const std::string& arg : request.argv()) bytes += arg.size();
  for (const auto& [key, value] : request.labels()) {
    bytes += key.size() + value.size();
  }
  return bytes;
}

std::string CommandLine(const procwarp::v1::ProcessInfo& info) {
  return absl::StrJoin(info.argv(), " ");
}

}  // namespace

grpc::Status ProcessesService::Spawn(grpc::ServerContext* context,
                                     const procwarp::v1::SpawnRequest* request,
                                     procwarp::v1::SpawnResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    RETURN_IF_ERROR(CheckSpawnRequest(*request));
    std::optional<SlotLimiter::Slot> charge;
    if (record_bytes_ != nullptr) {
      ASSIGN_OR_RETURN(auto held, record_bytes_->Acquire(
                                      caller, RecordBytes(*request)));
      charge.emplace(std::move(held));
    }
    // A spawn may wait for the caller's own doing (its FIFO as stdin): a
    // client that gives up takes the child down with it.
    ASSIGN_OR_RETURN(auto process,
                     table_->Spawn(*request, caller,
                                   [context] { return context->IsCancelled(); }));
    FaultPoint("spawn", 3, process->pidfd());  // admitted, before the answer
    if (charge.has_value()) {
      absl::MutexLock lock(&charges_mu_);
      charges_.emplace(process->id(), *std::move(charge));
    }
    *response->mutable_process() = process->Info();
    Audit("spawn", caller,
          {{"PROCESS_ID", process->id()},
           {"TARGET_PID", absl::StrCat(response->process().pid())},
           {"TARGET_UID", absl::StrCat(response->process().uid())},
           {"ARGV", CommandLine(response->process())}});
    return absl::OkStatus();
  });
}

grpc::Status ProcessesService::Wait(grpc::ServerContext* context,
                                    const procwarp::v1::WaitRequest* request,
                                    procwarp::v1::WaitResponse* response) {
  // A stream slot too: it can wait as long as the process runs.
  return WithStreamCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(auto process, table_->Find(request->id(), caller));
    while (!process->AwaitExit(kPollInterval)) {
      RETURN_IF_ERROR(CallEnded(context));
    }
    *response->mutable_process() = process->Info();
    return absl::OkStatus();
  });
}

grpc::Status ProcessesService::Signal(grpc::ServerContext* context,
                                      const procwarp::v1::SignalRequest* request,
                                      procwarp::v1::SignalResponse*) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    RETURN_IF_ERROR(CheckSignalRequest(*request));
    ASSIGN_OR_RETURN(auto process, table_->Find(request->id(), caller));
    RETURN_IF_ERROR(process->SignalFor(caller, request->signal()));
    Audit("signal", caller,
          {{"PROCESS_ID", process->id()},
           {"TARGET_PID", absl::StrCat(process->Info().pid())},
           {"SIGNAL", absl::StrCat(request->signal())}});
    return absl::OkStatus();
  });
}

grpc::Status ProcessesService::Get(grpc::ServerContext* context,
                                   const procwarp::v1::GetProcessRequest* request,
                                   procwarp::v1::GetProcessResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(auto process, table_->Find(request->id(), caller));
    *response->mutable_process() = process->Info();
    return absl::OkStatus();
  });
}

grpc::Status ProcessesService::List(
    grpc::ServerContext* context, const procwarp::v1::ListProcessesRequest* request,
    procwarp::v1::ListProcessesResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    RETURN_IF_ERROR(CheckListProcessesRequest(*request, caller));
    // The table lists in id order.
    response->set_next_page_token(FillPage(
        table_->List(caller, request->all()), request->page_token(),
        request->page_size(),
        [](const std::shared_ptr<ManagedProcess>& p) -> const std::string& {
          return p->id();
        },
        [](const std::shared_ptr<ManagedProcess>& p) { return p->Info(); },
        [&](procwarp::v1::ProcessInfo info) {
          *response->add_processes() = std::move(info);
        }));
    return absl::OkStatus();
  });
}

grpc::Status ProcessesService::Remove(
    grpc::ServerContext* context, const procwarp::v1::RemoveProcessRequest* request,
    procwarp::v1::RemoveProcessResponse*) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(auto process, table_->Find(request->id(), caller));
    if (request->force() && !process->exited()) {
      absl::Status killed = process->SignalFor(caller, SIGKILL);
      // FAILED_PRECONDITION: it exited meanwhile, which is what we wanted.
      if (!killed.ok() && !absl::IsFailedPrecondition(killed)) return killed;
      while (!process->AwaitExit(kPollInterval)) {
        RETURN_IF_ERROR(CallEnded(context));
      }
    }
    RETURN_IF_ERROR(table_->Remove(request->id(), caller));
    {
      absl::MutexLock lock(&charges_mu_);
      charges_.erase(process->id());
    }
    Audit("remove", caller, {{"PROCESS_ID", process->id()},
                             {"FORCE", request->force() ? "1" : "0"}});
    return absl::OkStatus();
  });
}

grpc::Status ProcessesService::ResizePty(
    grpc::ServerContext* context, const procwarp::v1::ResizePtyRequest* request,
    procwarp::v1::ResizePtyResponse*) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    RETURN_IF_ERROR(CheckResizePtyRequest(*request));
    ASSIGN_OR_RETURN(auto process, table_->Find(request->id(), caller));
    return process->ResizePty(request->size().rows(), request->size().cols());
  });
}

grpc::Status ProcessesService::Attach(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<AttachResponse, AttachRequest>* stream) {
  return WithStreamCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    AttachRequest first;
    if (!stream->Read(&first)) {
      return absl::InvalidArgumentError("Attach: the first message must name a process id");
    }
    ASSIGN_OR_RETURN(auto process, table_->Find(first.id(), caller));

    // Stdin flows on its own thread: the sync API's Read blocks, and output
    // must keep flowing while the client is quiet.
    absl::Notification reader_done;
    absl::Mutex reader_mu;
    absl::Status stdin_status;
    auto forward_stdin = [&](const AttachRequest& message) {
      absl::Status s;
      if (!message.stdin().empty()) {
        s = process->WriteStdin(message.stdin(),
                                [&] { return context->IsCancelled(); });
      }
      if (s.ok() && message.close_stdin()) s = process->CloseStdin();
      return s;
    };
    std::thread reader([&] {
      absl::Status s = forward_stdin(first);
      AttachRequest message;
      while (s.ok() && stream->Read(&message)) s = forward_stdin(message);
      {
        absl::MutexLock lock(&reader_mu);
        stdin_status = s;
      }
      reader_done.Notify();
    });

    uint64_t cursor = process->OutputCursor(!first.no_replay());
    bool finished = false;
    while (!finished && !context->IsCancelled()) {
      ManagedProcess::OutputUpdate update =
          process->AwaitOutput(cursor, kPollInterval);
      cursor = update.next_cursor;
      bool write_failed = false;
      for (auto& chunk : update.chunks) {
        AttachResponse out;
        *out.mutable_output() = std::move(chunk);
        if (!stream->Write(out)) {
          write_failed = true;
          break;
        }
      }
      if (write_failed) break;  // the client went away
      if (update.finished) {
        AttachResponse out;
        *out.mutable_exit() = update.exit;
        stream->Write(out);
        finished = true;
      }
    }
    // Give a well-behaved client time to half-close after the exit message;
    // then cancel, which unblocks the reader's Read.
    if (!reader_done.WaitForNotificationWithTimeout(absl::Seconds(2))) {
      context->TryCancel();
    }
    reader.join();
    if (!finished) return absl::CancelledError("attach ended by the client");
    absl::MutexLock lock(&reader_mu);
    // Stdin trouble after the exit is expected (the child stopped reading).
    if (!stdin_status.ok() && !absl::IsFailedPrecondition(stdin_status) &&
        !absl::IsCancelled(stdin_status)) {
      return stdin_status;
    }
    return absl::OkStatus();
  });
}

grpc::Status ProcessesService::Events(
    grpc::ServerContext* context, const procwarp::v1::EventsRequest*,
    grpc::ServerWriter<procwarp::v1::ProcessEvent>* writer) {
  return WithStreamCaller(*callers_, context, [&](const Identity& caller) -> absl::Status {
    auto subscription = events_->Subscribe(caller);
    // Tell the client the subscription is live, so it can act knowing no
    // later event is missed.
    writer->SendInitialMetadata();
    absl::Status result = absl::OkStatus();
    while (!context->IsCancelled()) {
      procwarp::v1::ProcessEvent event;
      bool overflowed = false;
      if (subscription->Next(&event, kPollInterval, &overflowed)) {
        if (!writer->Write(event)) break;
      } else if (overflowed) {
        result = absl::ResourceExhaustedError(absl::StrCat(
            "you were too slow: ", subscription->dropped(),
            " events dropped (events were produced faster than this client "
            "read them, past the daemon's queue bound); subscribe again and "
            "re-list"));
        break;
      }
    }
    events_->Unsubscribe(subscription);
    return result;
  });
}

}  // namespace procwarp
