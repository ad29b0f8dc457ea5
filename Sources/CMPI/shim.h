// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE) are macros over globals that
// Swift cannot import; these inline functions return them. smol_c_loop times the same collectives
// in plain C, as the reference for the Swift wrapper's overhead.
#include <mpi.h>

static inline MPI_Comm smol_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm smol_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype smol_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype smol_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype smol_int(void) { return MPI_INT; }
static inline MPI_Datatype smol_byte(void) { return MPI_BYTE; }
static inline MPI_Op smol_sum(void) { return MPI_SUM; }
static inline MPI_Op smol_max(void) { return MPI_MAX; }
static inline MPI_Op smol_min(void) { return MPI_MIN; }
static inline void *smol_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *smol_status_ignore(void) { return MPI_STATUS_IGNORE; }

enum { SMOL_ALL_REDUCE = 0, SMOL_ALL_GATHER = 1, SMOL_REDUCE_SCATTER = 2, SMOL_BROADCAST = 3, SMOL_ALLTOALL = 4, SMOL_SENDRECV = 5 };

// Runs `iters` of one collective on float buffers with `count` elements per rank (as the Swift
// benchmark defines them) and returns the mean seconds per iteration.
static inline double smol_c_loop(int op, float *send, float *recv, int count, int iters) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        switch (op) {
        case SMOL_ALL_REDUCE: MPI_Allreduce(send, recv, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); break;
        case SMOL_ALL_GATHER: MPI_Allgather(send, count, MPI_FLOAT, recv, count, MPI_FLOAT, MPI_COMM_WORLD); break;
        case SMOL_REDUCE_SCATTER: MPI_Reduce_scatter_block(send, recv, count / size, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); break;
        case SMOL_BROADCAST: MPI_Bcast(send, count, MPI_FLOAT, 0, MPI_COMM_WORLD); break;
        case SMOL_ALLTOALL: MPI_Alltoall(send, count / size, MPI_FLOAT, recv, count / size, MPI_FLOAT, MPI_COMM_WORLD); break;
        default: MPI_Sendrecv(send, count, MPI_FLOAT, (rank + 1) % size, 0, recv, count, MPI_FLOAT, (rank + size - 1) % size, 0,
                              MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return (MPI_Wtime() - t0) / iters;
}
