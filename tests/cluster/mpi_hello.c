/* A tiny MPI program for the test cluster: every rank reports its node and
 * takes part in one ring exchange and one allreduce, so a launch only counts
 * when the ranks really talk to each other across nodes. */
#include <mpi.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int rank, size, from_prev = -1, sum = 0;
	char host[256] = "";

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	gethostname(host, sizeof host - 1);
	MPI_Sendrecv(&rank, 1, MPI_INT, (rank + 1) % size, 0, &from_prev, 1,
		     MPI_INT, (rank + size - 1) % size, 0, MPI_COMM_WORLD,
		     MPI_STATUS_IGNORE);
	MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	printf("rank %d of %d on %s: from %d, sum %d\n", rank, size, host,
	       from_prev, sum);
	MPI_Finalize();
	return 0;
}
