/*
 * edgesync.h - `certplane edge-sync`: an edge's agent. It follows the
 * change feed GET /v1/edge/deployments with an edge key, writes each
 * production hostname's certificate chain and private key into a directory
 * as <hostname>.crt and <hostname>.key (atomically, mode 0600), removes the
 * files of hostnames no longer served, runs a reload command after each
 * batch, and keeps its cursor in the directory (.cursor, atomically) so that
 * a restart resumes where it stopped.
 */
#ifndef CP_EDGESYNC_H
#define CP_EDGESYNC_H

/* Run the command; argv[0] is "edge-sync", the flags follow (see
 * edgesync_usage). Returns the process exit status: 0 after a clean stop
 * (SIGTERM/SIGINT, or --once after one batch), 2 for bad flags, 1 when it
 * cannot go on (the directory, the cursor file). */
int edgesync_main(int argc, char **argv);

#endif
