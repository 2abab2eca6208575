/*
 * server_internal.h - shared between the files of server/ only.
 */
#ifndef CP_SERVER_INTERNAL_H
#define CP_SERVER_INTERNAL_H

#include "server/server.h"

#include <microhttpd.h>

/* Start a libmicrohttpd daemon on listen ("host:port") with a thread pool;
 * shared by the API listener and the HTTP-01 responder. */
cp_rc server_listen_daemon(const char *listen, int threads, MHD_AccessHandlerCallback cb,
			   void *cls, MHD_RequestCompletedCallback done,
			   struct MHD_Daemon **out) CP_WUR;

#endif
