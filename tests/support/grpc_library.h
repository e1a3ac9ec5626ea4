// For test binaries that run grpc++ servers or channels. gRPC cleans its library up when its last
// object goes away, and when that happens on one of gRPC's own threads the clean-up runs in a
// detached thread of its own (grpc_shutdown in <grpc/grpc.h>). A test binary that exits while it
// runs leaves gRPC's half-freed state to LeakSanitizer, which then fails a test that passed. This
// holds the library from the first test to the last and ends it on the main thread, waiting for
// the clean-up.
#pragma once

#include <grpc/grpc.h>
#include <gtest/gtest.h>

namespace zt::testing {

class GrpcLibraryEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { grpc_init(); }
  void TearDown() override { grpc_shutdown_blocking(); }
};

// One per test binary, however many of its sources include this.
inline ::testing::Environment* const kGrpcLibraryEnvironment =
    ::testing::AddGlobalTestEnvironment(new GrpcLibraryEnvironment);

}  // namespace zt::testing
