// The worker node (filled in with the supervisor and engine).
#pragma once
namespace qmesh::worker {}
