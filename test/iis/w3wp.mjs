// A stand-in w3wp.exe for the IIS emulator (test/iis/w3wp.ts): the parent process of the FastCGI
// processes it is asked to start, so that a relay's process.ppid is "its w3wp". Over IPC it gets
// {type:'spawn', id, cmd, env, cwd} with the relay's stdin socket as the handle, starts the relay
// with that socket as stdin and no stdout/stderr (as iisfcgi.dll does), and reports 'spawned' and
// 'exit'. It exits when the emulator disconnects.
import { spawn } from 'node:child_process';

process.on('message', (m, handle) => {
  if (m?.type !== 'spawn') return;
  let child;
  try {
    child = spawn(m.cmd[0], m.cmd.slice(1), { stdio: [handle, 'ignore', 'ignore'], env: m.env, cwd: m.cwd });
  } catch (err) {
    handle?.destroy();
    process.send({ type: 'error', id: m.id, err: String(err) });
    return;
  }
  // Our copy of the relay's end must go, or the relay's exit would not close the connection.
  handle?.destroy();
  child.once('error', (err) => process.send({ type: 'error', id: m.id, err: String(err) }));
  if (child.pid === undefined) return;
  process.send({ type: 'spawned', id: m.id, pid: child.pid });
  child.once('exit', (code, signal) => process.connected && process.send({ type: 'exit', id: m.id, code, signal }));
});
process.on('disconnect', () => process.exit(0));
