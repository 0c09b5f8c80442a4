"""corral worker: serves one WSGI app over FastCGI (stdlib only, Python 3.9+).

The entry is ../corral_worker.py (or `python3 -m corral_worker`); boot.main() does the work.
Modules, along the worker's seams:
  common     exit codes, exceptions, the log line
  codec      FastCGI records and name-value pairs (and corral's extension records)
  environ    the PEP 3333 environ from a request's params (IIS path fixes)
  body       wsgi.input (Input) and wsgi.file_wrapper
  request    a request id's protocol side: credit, STDOUT records, END_REQUEST
  exchange   the WSGI side: start_response, write(), the app's result
  server     the app, its thread pool, the requests in flight
  channel    a record stream: dispatching records to requests, serialized writes
  stdio      stdio mode: the service's pipes (threaded or inline)
  loop       the event loop of direct and standalone mode (accept, connections)
  conn       one FastCGI connection of that loop
  direct     direct mode's control channel, REPORTs and watchdog; standalone --listen
  devtrace   an exception's facts for the dev error page (the service renders it)
  apphints   app-loading messages: what was found, where it looked, which interpreter
  answer     the answerer: the service's error page while no worker of the app is ready
  appload    the --app spec, importing the app, where an error lies
  args       the command line
  boot       fds, sys.path, the app's import, FATAL reports; main()
"""
