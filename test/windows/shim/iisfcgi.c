/* iisfcgi.exe STATUS_FILE GRACE_MS MODE [INSTANCES] -- an IIS-style FastCGI launcher for the Wine test layer,
 * after iisfcgi.dll as ../../../../shared/research/iis-fastcgi.md describes it:
 *   - CreateNamedPipe (inheritable server end), the client end connected FIRST (as IIS does);
 *   - an inheritable manual-reset event whose handle value goes, in decimal, into _FCGI_SHUTDOWN_EVENT_;
 *   - CreateProcess(bInheritHandles=TRUE) of %IISFCGI_CMD% with the server end as stdin and invalid
 *     stdout/stderr; the server end is then closed here.
 * INSTANCES (default 1) such processes are started at once from this one process (one w3wp, several
 * FastCGI instances). Instance i's client end is bridged to the i-th TCP connection accepted on
 * 127.0.0.1 (port in STATUS_FILE as "port N"): the Linux test speaks FastCGI there, as IIS on the pipe.
 * When the test closes an instance's connection, MODE decides (leakprobe: instance 0 only):
 *   stop:      IIS's stop sequence: close the client end, SetEvent, wait GRACE_MS for the child, else
 *              TerminateProcess. Reports how the child ended.
 *   close:     the same without SetEvent: shows what the pipe close alone does.
 *   leakprobe: find the child's own children (the service a relay auto-started), TerminateProcess the
 *              child, then report whether the server end of the pipe is still open somewhere (the
 *              client end would see ERROR_BROKEN_PIPE once no process holds it) and whether each
 *              grandchild holds the pipe or the event at the inherited handle values.
 * Every observation is a line in STATUS_FILE ("key value..."), written as it happens.
 * Build: x86_64-w64-mingw32-gcc -O2 -s -o iisfcgi.exe iisfcgi.c -lws2_32
 */
#include <winsock2.h>
#include <windows.h>
#include <tlhelp32.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *status;
static CRITICAL_SECTION say_lock;
static DWORD grace;
static int leakprobe, noevent;

static void say(const char *fmt, ...) {
    EnterCriticalSection(&say_lock);
    va_list ap; va_start(ap, fmt); vfprintf(status, fmt, ap); va_end(ap);
    fputc('\n', status); fflush(status);
    LeaveCriticalSection(&say_lock);
}

typedef struct {
    int i;
    HANDLE srv_value, client, ev;   /* srv_value: the server end's handle value (closed here, open in the child) */
    PROCESS_INFORMATION pi;
    SOCKET sock;
} Instance;

/* pipe -> TCP; ends when the relay closes its end (or dies) */
static DWORD WINAPI pipe_to_tcp(LPVOID arg) {
    Instance *in = arg; char buf[65536]; DWORD n;
    while (ReadFile(in->client, buf, sizeof buf, &n, NULL) && n > 0)
        for (DWORD off = 0; off < n;) { int w = send(in->sock, buf + off, (int)(n - off), 0); if (w <= 0) return 0; off += (DWORD)w; }
    say("pipe-eof %d %lu", in->i, GetLastError());
    shutdown(in->sock, SD_SEND);
    return 0;
}

static int holds(HANDLE proc, HANDLE value, HANDLE *out) {
    return DuplicateHandle(proc, value, GetCurrentProcess(), out, 0, FALSE, DUPLICATE_SAME_ACCESS);
}

static void stop(Instance *in) {
    CloseHandle(in->client);                              /* (1) IIS shuts its end of the transport */
    DWORD t0 = GetTickCount();
    if (!noevent) SetEvent(in->ev);                       /* (2) signals the shutdown event, waits */
    DWORD r = WaitForSingleObject(in->pi.hProcess, grace), code = 0;
    if (r == WAIT_OBJECT_0) { GetExitCodeProcess(in->pi.hProcess, &code); say("child-exited %d code %lu ms %lu", in->i, code, GetTickCount() - t0); }
    else { say("child-still-running %d after %lu ms: TerminateProcess", in->i, grace); TerminateProcess(in->pi.hProcess, 1); } /* (3) */
}

static void probe(Instance *in) {
    DWORD kids[16]; char exes[16][MAX_PATH]; int nk = 0;
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    PROCESSENTRY32 pe = { sizeof pe };
    for (BOOL ok = Process32First(snap, &pe); ok && nk < 16; ok = Process32Next(snap, &pe))
        if (pe.th32ParentProcessID == in->pi.dwProcessId) { strcpy(exes[nk], pe.szExeFile); kids[nk++] = pe.th32ProcessID; }
    CloseHandle(snap);
    say("grandchildren %d", nk);
    TerminateProcess(in->pi.hProcess, 1);
    WaitForSingleObject(in->pi.hProcess, 10000);
    say("child-terminated");
    /* With no process holding the server end, PeekNamedPipe on the client end fails with ERROR_BROKEN_PIPE. */
    DWORD t0 = GetTickCount(), err = 0;
    while (GetTickCount() - t0 < grace) {
        DWORD avail;
        if (!PeekNamedPipe(in->client, NULL, 0, NULL, &avail, NULL)) { err = GetLastError(); break; }
        Sleep(20);
    }
    if (err) say("server-end closed %lu", err); else say("server-end still-open");
    for (int k = 0; k < nk; k++) {
        HANDLE p = OpenProcess(PROCESS_DUP_HANDLE | SYNCHRONIZE, FALSE, kids[k]);
        if (!p) { say("grandchild %lu %s gone", kids[k], exes[k]); continue; }
        HANDLE d;
        int evLeak = 0;                                   /* the same event if setting ours shows through theirs */
        if (holds(p, in->ev, &d)) {
            ResetEvent(in->ev); DWORD before = WaitForSingleObject(d, 0);
            SetEvent(in->ev); DWORD after = WaitForSingleObject(d, 0);
            evLeak = before == WAIT_TIMEOUT && after == WAIT_OBJECT_0;
            CloseHandle(d);
        }
        int pipeLeak = 0;
        if (holds(p, in->srv_value, &d)) {
            ULONG flags = 0;
            pipeLeak = GetFileType(d) == FILE_TYPE_PIPE && GetNamedPipeInfo(d, &flags, NULL, NULL, NULL) && (flags & PIPE_SERVER_END);
            CloseHandle(d);
        }
        say("grandchild %lu %s event %s pipe %s", kids[k], exes[k], evLeak ? "inherited" : "not-held", pipeLeak ? "inherited" : "not-held");
        CloseHandle(p);
    }
    CloseHandle(in->client);
}

/* TCP -> pipe; when the test closes the connection, IIS stops the instance */
static DWORD WINAPI serve(LPVOID arg) {
    Instance *in = arg; char buf[65536]; int n;
    CreateThread(NULL, 0, pipe_to_tcp, in, 0, NULL);
    while ((n = recv(in->sock, buf, sizeof buf, 0)) > 0) {
        DWORD wr; if (!WriteFile(in->client, buf, (DWORD)n, &wr, NULL)) { say("pipe-write-failed %d %lu", in->i, GetLastError()); break; }
    }
    say("tcp-closed %d", in->i);
    if (leakprobe && in->i == 0) probe(in); else stop(in);
    closesocket(in->sock);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: iisfcgi.exe STATUS_FILE GRACE_MS stop|close|leakprobe [INSTANCES] (command in IISFCGI_CMD)\n"); return 2; }
    InitializeCriticalSection(&say_lock);
    status = fopen(argv[1], "a");
    if (!status) return 2;
    grace = (DWORD)strtoul(argv[2], 0, 10); leakprobe = !strcmp(argv[3], "leakprobe"); noevent = !strcmp(argv[3], "close");
    int count = argc > 4 ? atoi(argv[4]) : 1;
    if (count < 1 || count > 8) count = 1;
    WCHAR cmd[8192];
    if (!GetEnvironmentVariableW(L"IISFCGI_CMD", cmd, 8192)) { say("error no IISFCGI_CMD"); return 2; }
    SetEnvironmentVariableW(L"IISFCGI_CMD", NULL);

    static Instance inst[8];
    SECURITY_ATTRIBUTES sa = { sizeof sa, NULL, TRUE };
    for (int i = 0; i < count; i++) {
        Instance *in = &inst[i]; in->i = i;
        char name[128]; sprintf(name, "\\\\.\\pipe\\IISFCGI-%lu-%lu-%d", GetCurrentProcessId(), GetTickCount(), i);
        HANDLE srv = CreateNamedPipeA(name, PIPE_ACCESS_DUPLEX, PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT, 1, 65536, 65536, 0, &sa);
        if (srv == INVALID_HANDLE_VALUE) { say("error CreateNamedPipe %lu", GetLastError()); return 2; }
        in->client = CreateFileA(name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);  /* connected first */
        if (in->client == INVALID_HANDLE_VALUE) { say("error connect %lu", GetLastError()); return 2; }
        in->ev = CreateEventW(&sa, TRUE, FALSE, NULL);
        char v[32]; sprintf(v, "%u", (unsigned)(UINT_PTR)in->ev);
        SetEnvironmentVariableA("_FCGI_SHUTDOWN_EVENT_", v);
        SetEnvironmentVariableA("_FCGI_X_PIPE_", name);
        STARTUPINFOW si = { sizeof si }; si.dwFlags = STARTF_USESTDHANDLES;
        si.hStdInput = srv; si.hStdOutput = INVALID_HANDLE_VALUE; si.hStdError = INVALID_HANDLE_VALUE;
        WCHAR line[8192]; wcscpy(line, cmd);
        if (!CreateProcessW(NULL, line, NULL, NULL, TRUE, CREATE_NO_WINDOW, NULL, NULL, &si, &in->pi)) { say("error CreateProcess %lu", GetLastError()); return 2; }
        in->srv_value = srv;
        CloseHandle(srv);                                 /* only the child holds the server end now */
        say("child %d pid %lu pipe %s handle %u event %u", i, in->pi.dwProcessId, name, (unsigned)(UINT_PTR)srv, (unsigned)(UINT_PTR)in->ev);
    }

    WSADATA w; WSAStartup(MAKEWORD(2, 2), &w);
    SOCKET ls = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    SetHandleInformation((HANDLE)ls, HANDLE_FLAG_INHERIT, 0);
    struct sockaddr_in a = { 0 }; a.sin_family = AF_INET; a.sin_port = 0; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int alen = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 8) != 0 || getsockname(ls, (struct sockaddr *)&a, &alen) != 0) {
        say("error tcp %d", WSAGetLastError()); return 2;
    }
    say("port %d", ntohs(a.sin_port));
    HANDLE threads[8];
    for (int i = 0; i < count; i++) {
        inst[i].sock = accept(ls, NULL, NULL);
        if (inst[i].sock == INVALID_SOCKET) { say("error accept %d", WSAGetLastError()); return 2; }
        int one = 1; setsockopt(inst[i].sock, IPPROTO_TCP, TCP_NODELAY, (char *)&one, sizeof one);
        say("tcp-connected %d", i);
        threads[i] = CreateThread(NULL, 0, serve, &inst[i], 0, NULL);
    }
    closesocket(ls);
    WaitForMultipleObjects((DWORD)count, threads, TRUE, INFINITE);
    say("done");
    return 0;
}
