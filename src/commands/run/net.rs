//! `run -p [HOST_IP:]HOST_PORT[:GUEST_FD]`: TCP sockets that `run` listens on and hands to a
//! WASI preview 1 guest, which accepts connections on them (`sock_accept`) and talks over
//! what it accepts.
//!
//! Preview 1 cannot open a socket: a server gets its listening socket from the runtime, as a
//! descriptor that is open when it starts. wasmtime-wasi 48's preview 1 has no sockets at all
//! (its `sock_accept` answers ENOTSOCK), and `wasi-common`, the implementation behind
//! `wasmtime run --tcplisten`, was last published for wasmtime 46 and has left wasmtime since.
//! So `run` serves the socket calls itself: the preview 1 functions a socket needs
//! (`sock_*`, and `fd_read`, `fd_write`, `fd_close`, `fd_fdstat_get`,
//! `fd_fdstat_set_flags`, `fd_filestat_get`, `fd_prestat_get`, `fd_prestat_dir_name`) are
//! wrapped: a call on a socket's descriptor is answered here, any other goes on to
//! wasmtime-wasi's own function for it. Without `-p` nothing is wrapped. Not served on a
//! socket: `poll_oneoff` (so no async runtimes), `fd_renumber`, and the rest, which see the
//! placeholder described below.
//!
//! Descriptor numbers:
//! - The listeners take the numbers right after the preopened folders, in the order of the
//!   `-p` flags: `3 + folders`, so `4` for the first when only the image's root is preopened.
//!   Not before the folders (where `wasmtime --tcplisten` put them): wasi-libc finds the
//!   preopened folders by asking for 3, 4, … until a number is not a folder, so a socket at 3
//!   hides every folder after it. Each listener's number is reserved in wasmtime-wasi's own
//!   table by a read-only preopen of the image's root, so no file the guest opens gets it.
//!   wasi-libc never sees it as a folder (`fd_prestat_get` answers EBADF); a call that is
//!   not wrapped (`path_open` on that number, say) sees the image's files read-only, which
//!   the guest can read at `/` anyway.
//! - The guest learns them from its environment: `LISTEN_FDS` (how many, systemd's name)
//!   and `LISTEN_FDS_START` (the first; systemd's is always 3, WASI's cannot be).
//! - Accepted connections get numbers from 2^30 up, far above anything wasmtime-wasi hands
//!   out (it counts up from the highest number in use), so the two tables never collide.
//!
//! The host side binds to 127.0.0.1 unless `HOST_IP` says otherwise: unlike Docker's
//! `0.0.0.0`, a server a guest runs is not reachable from the network by surprise.

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use wasmtime::{AsContextMut as _, Caller, Extern, Linker, Memory, Module, Val, ValType};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::debug;

/// The first descriptor after stdin, stdout and stderr.
const FIRST_PREOPEN: u32 = 3;
/// The first descriptor number of an accepted connection.
const FIRST_STREAM: u32 = 1 << 30;
/// Most `-p` flags one run takes.
const MAX_LISTENERS: usize = 64;
/// Most bytes one read or write moves; the guest asks again for the rest.
const MAX_TRANSFER: usize = 1 << 20;
const WASI: &str = "wasi_snapshot_preview1";

/// One `-p` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Where the host listens.
    pub address: SocketAddr,
    /// The descriptor number the flag asks for; the run fails if the socket would get
    /// another.
    pub guest_fd: Option<u32>,
    /// The flag as given, for messages.
    pub text: String,
}

impl FromStr for Publish {
    type Err = String;

    /// `8080`, `8080:4`, `0.0.0.0:8080`, `0.0.0.0:8080:4`, `[::1]:8080`, `[::1]:8080:4`.
    fn from_str(text: &str) -> Result<Publish, String> {
        let usage =
            "expected [HOST_IP:]HOST_PORT[:GUEST_FD], e.g. 8080, 127.0.0.1:8080 or [::1]:8080:4";
        let (ip, rest): (Option<IpAddr>, Vec<&str>) = if let Some(bracketed) =
            text.strip_prefix('[')
        {
            let (ip, rest) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{text:?} has no `]` after the IPv6 address; {usage}"))?;
            let ip = ip
                .parse::<IpAddr>()
                .map_err(|_| format!("{ip:?} is not an IP address; {usage}"))?;
            let rest = rest
                .strip_prefix(':')
                .ok_or_else(|| format!("{text:?} has no port after the address; {usage}"))?;
            (Some(ip), rest.split(':').collect())
        } else {
            let parts: Vec<&str> = text.split(':').collect();
            match parts.as_slice() {
                // `IP:PORT` or `PORT:FD`: an address says which.
                [first, _] | [first, _, _] if first.parse::<IpAddr>().is_ok() => {
                    (first.parse().ok(), parts[1..].to_vec())
                }
                [_, _, _] => return Err(format!("{:?} is not an IP address; {usage}", parts[0])),
                _ => (None, parts),
            }
        };
        let (port, fd) = match rest.as_slice() {
            [port] => (*port, None),
            [port, fd] => (*port, Some(*fd)),
            _ => return Err(format!("{text:?}: {usage}")),
        };
        let port = match port.parse::<u16>() {
            Ok(0) => {
                return Err(format!(
                    "{text:?}: the host port must be 1 to 65535 (0 would be a port nobody is told)"
                ));
            }
            Ok(port) => port,
            Err(_) => return Err(format!("{port:?} is not a port number; {usage}")),
        };
        let guest_fd = match fd {
            None => None,
            Some(fd) => match fd.parse::<u32>() {
                Ok(fd) if (FIRST_PREOPEN..FIRST_STREAM).contains(&fd) => Some(fd),
                _ => {
                    return Err(format!(
                        "{fd:?} is not a descriptor number a listener can have (3 or above); {usage}"
                    ));
                }
            },
        };
        Ok(Publish {
            address: SocketAddr::new(ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), port),
            guest_fd,
            text: text.to_owned(),
        })
    }
}

/// The sockets of one run: none without `-p`.
pub(super) struct Listeners {
    sockets: Arc<Mutex<Sockets>>,
    count: u32,
    first: u32,
}

impl Listeners {
    /// Listens on every `-p` address; the sockets get descriptors from
    /// `3 + preopened_folders` on, which is what each `GUEST_FD` must say.
    pub(super) fn bind(publish: &[Publish], preopened_folders: u32) -> Result<Listeners> {
        anyhow::ensure!(
            publish.len() <= MAX_LISTENERS,
            "{} -p flags: at most {MAX_LISTENERS} sockets can be handed to a guest",
            publish.len()
        );
        let first = FIRST_PREOPEN + preopened_folders;
        let mut listeners = Vec::with_capacity(publish.len());
        for (fd, flag) in (first..).zip(publish) {
            if let Some(wanted) = flag.guest_fd
                && wanted != fd
            {
                anyhow::bail!(
                    "-p {}: the socket would be fd {fd}, not {wanted} (listeners take the fds right \
                     after the preopened folders, fds 3 to {}, in the order of the -p flags)",
                    flag.text,
                    first - 1
                );
            }
            let socket = TcpListener::bind(flag.address)
                .with_context(|| format!("cannot listen on {} (-p {})", flag.address, flag.text))?;
            debug(&format!("listening on {} as fd {fd}", flag.address));
            listeners.push(Some(Listener {
                socket,
                nonblocking: false,
            }));
        }
        Ok(Listeners {
            count: listeners.len() as u32,
            first,
            sockets: Arc::new(Mutex::new(Sockets {
                first,
                listeners,
                streams: BTreeMap::new(),
                checked: false,
            })),
        })
    }

    /// Reserves the sockets' descriptor numbers in the guest's table (see the module's
    /// docs) and tells the guest where they are. Call after the last folder is preopened.
    pub(super) fn preopen(&self, wasi: &mut WasiCtxBuilder, root: &Path) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        for fd in self.first..self.first + self.count {
            wasi.preopened_dir(
                root,
                format!("/.wasmbuild/listener/{fd}"),
                FsPerms::ReadOnly,
            )
            .map_err(|e| anyhow::anyhow!("cannot reserve fd {fd} for a listener: {e}"))?;
        }
        wasi.env("LISTEN_FDS", self.count.to_string())
            .env("LISTEN_FDS_START", self.first.to_string());
        Ok(())
    }

    /// Wraps the preview 1 functions `module` imports that a socket needs, so that calls on
    /// the sockets are served here; `wasi` finds the guest's WASI context in the store.
    pub(super) fn add_to_linker<T: Send + 'static>(
        &self,
        linker: &mut Linker<T>,
        module: &Module,
        wasi: impl Fn(&mut T) -> &mut WasiP1Ctx + Copy + Send + Sync + 'static,
    ) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        linker.allow_shadowing(true);
        for import in module.imports() {
            let Some(ty) = import.ty().func().cloned() else {
                continue;
            };
            let Some(call) = Call::of(import.name()).filter(|_| import.module() == WASI) else {
                continue;
            };
            // Every parameter is an i32, the result an errno; a function imported with
            // another signature is left alone (it does not link).
            if ty.params().len() != call.arity()
                || !ty.params().all(|p| matches!(p, ValType::I32))
                || !matches!(ty.results().collect::<Vec<_>>().as_slice(), [ValType::I32])
            {
                continue;
            }
            let sockets = self.sockets.clone();
            linker.func_new(
                WASI,
                import.name(),
                ty,
                move |mut caller, params, results| {
                    let args: Vec<i32> = params.iter().map(|p| p.i32().unwrap_or(0)).collect();
                    let errno = {
                        let mut sockets = sockets
                            .lock()
                            .map_err(|_| wasmtime::format_err!("the socket table is poisoned"))?;
                        if !sockets.checked {
                            sockets.check(wasi(caller.data_mut()))?;
                        }
                        let fd = args[0] as u32;
                        if sockets.owns(fd) {
                            Some(sockets.serve(call, fd, &mut caller, &args))
                        } else if call.is_sock() {
                            // wasmtime-wasi answers the same for any descriptor it has.
                            Some(Errno::NOTSOCK)
                        } else {
                            None
                        }
                    };
                    results[0] = Val::I32(match errno {
                        Some(errno) => i32::from(errno.0),
                        None => call.delegate(&mut caller, wasi, &args)?,
                    });
                    Ok(())
                },
            )?;
        }
        linker.allow_shadowing(false);
        Ok(())
    }
}

/// A preview 1 error number (`errno` in wasi_snapshot_preview1.witx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Errno(u16);

impl Errno {
    const SUCCESS: Errno = Errno(0);
    const ACCES: Errno = Errno(2);
    const ADDRINUSE: Errno = Errno(3);
    const AGAIN: Errno = Errno(6);
    const BADF: Errno = Errno(8);
    const CONNABORTED: Errno = Errno(13);
    const CONNREFUSED: Errno = Errno(14);
    const CONNRESET: Errno = Errno(15);
    const FAULT: Errno = Errno(21);
    const INTR: Errno = Errno(27);
    const INVAL: Errno = Errno(28);
    const IO: Errno = Errno(29);
    const NOMEM: Errno = Errno(48);
    const NOTCONN: Errno = Errno(53);
    const NOTSOCK: Errno = Errno(57);
    const NOTSUP: Errno = Errno(58);
    const PIPE: Errno = Errno(64);
    const TIMEDOUT: Errno = Errno(73);

    fn of(error: &io::Error) -> Errno {
        match error.kind() {
            io::ErrorKind::WouldBlock => Errno::AGAIN,
            io::ErrorKind::Interrupted => Errno::INTR,
            io::ErrorKind::BrokenPipe => Errno::PIPE,
            io::ErrorKind::ConnectionReset => Errno::CONNRESET,
            io::ErrorKind::ConnectionAborted => Errno::CONNABORTED,
            io::ErrorKind::ConnectionRefused => Errno::CONNREFUSED,
            io::ErrorKind::NotConnected => Errno::NOTCONN,
            io::ErrorKind::TimedOut => Errno::TIMEDOUT,
            io::ErrorKind::InvalidInput => Errno::INVAL,
            io::ErrorKind::PermissionDenied => Errno::ACCES,
            io::ErrorKind::AddrInUse => Errno::ADDRINUSE,
            io::ErrorKind::OutOfMemory => Errno::NOMEM,
            io::ErrorKind::Unsupported => Errno::NOTSUP,
            _ => Errno::IO,
        }
    }
}

/// `fdflags.nonblock`
const NONBLOCK: u16 = 1 << 2;
/// `filetype.socket_stream`
const SOCKET_STREAM: u8 = 6;
/// `riflags`
const RECV_PEEK: u16 = 1 << 0;
const RECV_WAITALL: u16 = 1 << 1;
/// `sdflags`
const SHUT_RD: u8 = 1 << 0;
const SHUT_WR: u8 = 1 << 1;
/// `rights`: fd_read, fd_fdstat_set_flags, fd_write, fd_filestat_get, poll_fd_readwrite,
/// sock_shutdown, sock_accept.
const SOCKET_RIGHTS: u64 = 1 << 1 | 1 << 3 | 1 << 6 | 1 << 21 | 1 << 27 | 1 << 28 | 1 << 29;

/// The preview 1 functions that are wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    SockAccept,
    SockRecv,
    SockSend,
    SockShutdown,
    FdRead,
    FdWrite,
    FdClose,
    FdFdstatGet,
    FdFdstatSetFlags,
    FdFilestatGet,
    FdPrestatGet,
    FdPrestatDirName,
}

impl Call {
    fn of(name: &str) -> Option<Call> {
        Some(match name {
            "sock_accept" => Call::SockAccept,
            "sock_recv" => Call::SockRecv,
            "sock_send" => Call::SockSend,
            "sock_shutdown" => Call::SockShutdown,
            "fd_read" => Call::FdRead,
            "fd_write" => Call::FdWrite,
            "fd_close" => Call::FdClose,
            "fd_fdstat_get" => Call::FdFdstatGet,
            "fd_fdstat_set_flags" => Call::FdFdstatSetFlags,
            "fd_filestat_get" => Call::FdFilestatGet,
            "fd_prestat_get" => Call::FdPrestatGet,
            "fd_prestat_dir_name" => Call::FdPrestatDirName,
            _ => return None,
        })
    }

    /// How many parameters it takes (all i32, the descriptor first).
    fn arity(self) -> usize {
        match self {
            Call::FdClose => 1,
            Call::SockShutdown
            | Call::FdFdstatGet
            | Call::FdFdstatSetFlags
            | Call::FdFilestatGet
            | Call::FdPrestatGet => 2,
            Call::SockAccept | Call::FdPrestatDirName => 3,
            Call::FdRead | Call::FdWrite => 4,
            Call::SockSend => 5,
            Call::SockRecv => 6,
        }
    }

    fn is_sock(self) -> bool {
        matches!(
            self,
            Call::SockAccept | Call::SockRecv | Call::SockSend | Call::SockShutdown
        )
    }

    /// wasmtime-wasi's own function, for a descriptor that is not a socket; `args` as the
    /// guest passed them. These are the functions its linker entries call, set up the same
    /// way; public, though wasmtime-wasi says they are not meant for use outside it (a
    /// wasmtime upgrade may move them: the build says so).
    fn delegate<T>(
        self,
        caller: &mut Caller<'_, T>,
        wasi: impl Fn(&mut T) -> &mut WasiP1Ctx,
        args: &[i32],
    ) -> wasmtime::Result<i32> {
        use p1::WasiSnapshotPreview1 as _;
        use wasmtime_wasi::runtime::in_tokio;
        let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
            wasmtime::bail!("missing required memory export");
        };
        let fuel = caller.as_context_mut().hostcall_fuel();
        let (bytes, data) = memory.data_and_store_mut(&mut *caller);
        let ctx = wasi(data);
        ctx.set_hostcall_fuel(fuel);
        let mem = &mut wiggle::GuestMemory::Unshared(bytes);
        let a = |i: usize| args[i];
        match self {
            Call::FdRead => in_tokio(p1::fd_read(ctx, mem, a(0), a(1), a(2), a(3))),
            Call::FdWrite => in_tokio(p1::fd_write(ctx, mem, a(0), a(1), a(2), a(3))),
            Call::FdClose => in_tokio(p1::fd_close(ctx, mem, a(0))),
            Call::FdFdstatGet => in_tokio(p1::fd_fdstat_get(ctx, mem, a(0), a(1))),
            Call::FdFilestatGet => in_tokio(p1::fd_filestat_get(ctx, mem, a(0), a(1))),
            Call::FdFdstatSetFlags => p1::fd_fdstat_set_flags(ctx, mem, a(0), a(1)),
            Call::FdPrestatGet => p1::fd_prestat_get(ctx, mem, a(0), a(1)),
            Call::FdPrestatDirName => p1::fd_prestat_dir_name(ctx, mem, a(0), a(1), a(2)),
            Call::SockAccept | Call::SockRecv | Call::SockSend | Call::SockShutdown => {
                Ok(i32::from(Errno::NOTSOCK.0))
            }
        }
    }
}

struct Listener {
    socket: TcpListener,
    nonblocking: bool,
}

struct Stream {
    socket: TcpStream,
    nonblocking: bool,
}

/// The run's sockets, by descriptor number.
struct Sockets {
    first: u32,
    /// From `first` on; `None` once the guest closed it (the number stays taken).
    listeners: Vec<Option<Listener>>,
    streams: BTreeMap<u32, Stream>,
    /// Whether the preopened folders were found to end where `first` says.
    checked: bool,
}

/// What a descriptor of [`Sockets`] is.
#[derive(Clone, Copy)]
enum Kind {
    Listener(usize),
    Stream,
    /// A listener the guest closed: its number stays taken.
    Closed,
}

impl Sockets {
    fn owns(&self, fd: u32) -> bool {
        fd.checked_sub(self.first)
            .is_some_and(|i| (i as usize) < self.listeners.len())
            || self.streams.contains_key(&fd)
    }

    fn kind(&self, fd: u32) -> Kind {
        if self.streams.contains_key(&fd) {
            return Kind::Stream;
        }
        match fd.checked_sub(self.first).map(|i| i as usize) {
            Some(i) if self.listeners.get(i).is_some_and(Option::is_some) => Kind::Listener(i),
            _ => Kind::Closed,
        }
    }

    /// The listeners' numbers were announced before the context was built; the folders
    /// wasmtime-wasi numbers before them must be as many as `run` said.
    fn check(&mut self, wasi: &mut WasiP1Ctx) -> wasmtime::Result<()> {
        use wasmtime_wasi::filesystem::WasiFilesystemView as _;
        use wasmtime_wasi::p2::bindings::filesystem::preopens;
        let mut view = wasi.filesystem();
        let preopens = preopens::Host::get_directories(&mut view)?;
        let count = preopens.len() as u32;
        for (dir, _) in preopens {
            view.table.delete(dir)?;
        }
        let listeners = self.listeners.len() as u32;
        let folders_end = FIRST_PREOPEN + count.saturating_sub(listeners);
        wasmtime::ensure!(
            folders_end == self.first,
            "the listening sockets were announced as fds from {}, but the preopened folders end before fd {folders_end} (a bug in `run`)",
            self.first
        );
        self.checked = true;
        Ok(())
    }

    /// Answers `call` on the socket at `fd`; `args` are the call's parameters.
    fn serve<T>(&mut self, call: Call, fd: u32, caller: &mut Caller<'_, T>, args: &[i32]) -> Errno {
        let arg = |i: usize| args.get(i).copied().unwrap_or(0) as u32;
        let kind = self.kind(fd);
        let result = match (call, kind) {
            (_, Kind::Closed) => Err(Errno::BADF),
            (Call::FdClose, Kind::Listener(i)) => {
                self.listeners[i] = None;
                Ok(())
            }
            (Call::FdClose, Kind::Stream) => {
                self.streams.remove(&fd);
                Ok(())
            }
            (Call::SockAccept, Kind::Listener(i)) => {
                self.accept(fd, i, caller, arg(1) as u16, arg(2))
            }
            (Call::SockAccept, Kind::Stream) => Err(Errno::INVAL),
            (
                Call::FdRead | Call::SockRecv | Call::FdWrite | Call::SockSend | Call::SockShutdown,
                Kind::Listener(_),
            ) => Err(Errno::NOTCONN),
            (
                Call::FdRead | Call::SockRecv | Call::FdWrite | Call::SockSend | Call::SockShutdown,
                Kind::Stream,
            ) => match self.streams.get_mut(&fd) {
                Some(stream) => transfer(call, &mut stream.socket, caller, &arg),
                None => Err(Errno::BADF),
            },
            (Call::FdFdstatGet, kind) => {
                let mut stat = [0u8; 24];
                stat[0] = SOCKET_STREAM;
                let flags = if self.nonblocking(fd, kind) {
                    NONBLOCK
                } else {
                    0
                };
                stat[2..4].copy_from_slice(&flags.to_le_bytes());
                stat[8..16].copy_from_slice(&SOCKET_RIGHTS.to_le_bytes());
                stat[16..24].copy_from_slice(&SOCKET_RIGHTS.to_le_bytes());
                write_bytes(caller, arg(1), &stat)
            }
            (Call::FdFdstatSetFlags, kind) => {
                let flags = arg(1) as u16;
                if flags & !NONBLOCK != 0 {
                    Err(Errno::INVAL)
                } else {
                    self.set_nonblocking(fd, kind, flags & NONBLOCK != 0)
                        .map_err(|e| Errno::of(&e))
                }
            }
            (Call::FdFilestatGet, _) => {
                let mut stat = [0u8; 64];
                stat[16] = SOCKET_STREAM;
                write_bytes(caller, arg(1), &stat)
            }
            // A socket is no preopened folder.
            (Call::FdPrestatGet | Call::FdPrestatDirName, _) => Err(Errno::BADF),
        };
        result.err().unwrap_or(Errno::SUCCESS)
    }

    /// `sock_accept` on the listener at `fd` (index `i`): the connection's number goes to
    /// the guest's `out`.
    fn accept<T>(
        &mut self,
        fd: u32,
        i: usize,
        caller: &mut Caller<'_, T>,
        flags: u16,
        out: u32,
    ) -> Result<(), Errno> {
        let Some(Some(listener)) = self.listeners.get(i) else {
            return Err(Errno::BADF);
        };
        if flags & !NONBLOCK != 0 {
            return Err(Errno::INVAL);
        }
        let (socket, peer) = listener.socket.accept().map_err(|e| Errno::of(&e))?;
        debug(&format!("fd {fd}: connection from {peer}"));
        let nonblocking = flags & NONBLOCK != 0;
        socket
            .set_nonblocking(nonblocking)
            .map_err(|e| Errno::of(&e))?;
        let new = self.free_stream_fd();
        write_u32(caller, out, new)?;
        self.streams.insert(
            new,
            Stream {
                socket,
                nonblocking,
            },
        );
        Ok(())
    }

    fn nonblocking(&self, fd: u32, kind: Kind) -> bool {
        match kind {
            Kind::Listener(i) => self.listeners[i].as_ref().is_some_and(|l| l.nonblocking),
            Kind::Stream => self.streams.get(&fd).is_some_and(|s| s.nonblocking),
            Kind::Closed => false,
        }
    }

    fn set_nonblocking(&mut self, fd: u32, kind: Kind, nonblocking: bool) -> io::Result<()> {
        match kind {
            Kind::Listener(i) => {
                if let Some(listener) = self.listeners[i].as_mut() {
                    listener.socket.set_nonblocking(nonblocking)?;
                    listener.nonblocking = nonblocking;
                }
            }
            Kind::Stream => {
                if let Some(stream) = self.streams.get_mut(&fd) {
                    stream.socket.set_nonblocking(nonblocking)?;
                    stream.nonblocking = nonblocking;
                }
            }
            Kind::Closed => {}
        }
        Ok(())
    }

    /// The lowest number from [`FIRST_STREAM`] on that no connection has.
    fn free_stream_fd(&self) -> u32 {
        let mut fd = FIRST_STREAM;
        for &taken in self.streams.keys() {
            if taken != fd {
                break;
            }
            fd += 1;
        }
        fd
    }
}

/// `fd_read`, `sock_recv`, `fd_write`, `sock_send` or `sock_shutdown` on a connection;
/// `arg(i)` is the call's parameter `i`.
fn transfer<T>(
    call: Call,
    socket: &mut TcpStream,
    caller: &mut Caller<'_, T>,
    arg: &impl Fn(usize) -> u32,
) -> Result<(), Errno> {
    match call {
        // (fd, iovs, iovs_len, nread)
        Call::FdRead => {
            let n = receive(caller, socket, arg(1), arg(2), 0)?;
            write_u32(caller, arg(3), n)
        }
        // (fd, iovs, iovs_len, ri_flags, ro_datalen, ro_flags)
        Call::SockRecv => {
            let n = receive(caller, socket, arg(1), arg(2), arg(3) as u16)?;
            write_u32(caller, arg(4), n)?;
            write_bytes(caller, arg(5), &0u16.to_le_bytes())
        }
        // (fd, iovs, iovs_len, nwritten)
        Call::FdWrite => {
            let n = send(caller, socket, arg(1), arg(2))?;
            write_u32(caller, arg(3), n)
        }
        // (fd, iovs, iovs_len, si_flags, so_datalen)
        Call::SockSend => {
            let n = send(caller, socket, arg(1), arg(2))?;
            write_u32(caller, arg(4), n)
        }
        // (fd, how)
        Call::SockShutdown => {
            let how = match arg(1) as u8 {
                SHUT_RD => Shutdown::Read,
                SHUT_WR => Shutdown::Write,
                how if how == SHUT_RD | SHUT_WR => Shutdown::Both,
                _ => return Err(Errno::INVAL),
            };
            socket.shutdown(how).map_err(|e| Errno::of(&e))
        }
        _ => Err(Errno::INVAL),
    }
}

fn memory<T>(caller: &mut Caller<'_, T>) -> Result<Memory, Errno> {
    caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or(Errno::FAULT)
}

fn read_bytes<T>(caller: &mut Caller<'_, T>, ptr: u32, len: usize) -> Result<Vec<u8>, Errno> {
    let memory = memory(caller)?;
    let mut bytes = vec![0; len];
    memory
        .read(&*caller, ptr as usize, &mut bytes)
        .map_err(|_| Errno::FAULT)?;
    Ok(bytes)
}

fn write_bytes<T>(caller: &mut Caller<'_, T>, ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
    let memory = memory(caller)?;
    memory
        .write(&mut *caller, ptr as usize, bytes)
        .map_err(|_| Errno::FAULT)
}

fn write_u32<T>(caller: &mut Caller<'_, T>, ptr: u32, value: u32) -> Result<(), Errno> {
    write_bytes(caller, ptr, &value.to_le_bytes())
}

/// The (pointer, length) pairs of an `iovec` or `ciovec` array.
fn iovecs<T>(caller: &mut Caller<'_, T>, ptr: u32, count: u32) -> Result<Vec<(u32, u32)>, Errno> {
    let bytes = read_bytes(
        caller,
        ptr,
        (count as usize).checked_mul(8).ok_or(Errno::INVAL)?,
    )?;
    Ok(bytes
        .chunks_exact(8)
        .map(|v| {
            (
                u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
                u32::from_le_bytes([v[4], v[5], v[6], v[7]]),
            )
        })
        .collect())
}

/// Reads from `socket` into the guest's buffers; returns how many bytes.
fn receive<T>(
    caller: &mut Caller<'_, T>,
    socket: &mut TcpStream,
    iovs: u32,
    count: u32,
    flags: u16,
) -> Result<u32, Errno> {
    let buffers = iovecs(caller, iovs, count)?;
    let want = buffers
        .iter()
        .map(|&(_, len)| len as usize)
        .sum::<usize>()
        .min(MAX_TRANSFER);
    let mut data = vec![0; want];
    let mut got = 0;
    while got < want {
        let n = if flags & RECV_PEEK != 0 {
            socket.peek(&mut data[got..])
        } else {
            socket.read(&mut data[got..])
        };
        match n {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if got > 0 && error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) => return Err(Errno::of(&error)),
        }
        if flags & RECV_WAITALL == 0 || flags & RECV_PEEK != 0 {
            break;
        }
    }
    let mut rest = &data[..got];
    for (ptr, len) in buffers {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at(rest.len().min(len as usize));
        write_bytes(caller, ptr, chunk)?;
        rest = after;
    }
    Ok(got as u32)
}

/// Writes the guest's buffers to `socket`; returns how many bytes it took.
fn send<T>(
    caller: &mut Caller<'_, T>,
    socket: &mut TcpStream,
    iovs: u32,
    count: u32,
) -> Result<u32, Errno> {
    let mut data = Vec::new();
    for (ptr, len) in iovecs(caller, iovs, count)? {
        let take = (len as usize).min(MAX_TRANSFER - data.len());
        data.extend(read_bytes(caller, ptr, take)?);
        if data.len() == MAX_TRANSFER {
            break;
        }
    }
    loop {
        match socket.write(&data) {
            Ok(n) => return Ok(n as u32),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(Errno::of(&error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(String, Option<u32>), String> {
        text.parse::<Publish>()
            .map(|p| (p.address.to_string(), p.guest_fd))
    }

    #[test]
    fn publish_flags_parse() {
        assert_eq!(parse("8080"), Ok(("127.0.0.1:8080".into(), None)));
        assert_eq!(parse("8080:4"), Ok(("127.0.0.1:8080".into(), Some(4))));
        assert_eq!(parse("0.0.0.0:80"), Ok(("0.0.0.0:80".into(), None)));
        assert_eq!(parse("10.1.2.3:80:5"), Ok(("10.1.2.3:80".into(), Some(5))));
        assert_eq!(parse("[::1]:8080"), Ok(("[::1]:8080".into(), None)));
        assert_eq!(parse("[::]:8080:7"), Ok(("[::]:8080".into(), Some(7))));
    }

    #[test]
    fn bad_publish_flags_say_why() {
        for (text, says) in [
            ("", "is not a port number"),
            ("http", "is not a port number"),
            ("0", "must be 1 to 65535"),
            ("70000", "is not a port number"),
            ("8080:2", "3 or above"),
            ("8080:x", "3 or above"),
            ("host:80:4", "is not an IP address"),
            ("1.2.3.4:80:4:5", "expected [HOST_IP:]HOST_PORT[:GUEST_FD]"),
            ("[::1:80", "no `]`"),
            ("[::1]", "no port"),
            ("[nope]:80", "is not an IP address"),
        ] {
            let err = text.parse::<Publish>().unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn accepted_connections_take_the_lowest_free_number() {
        let mut sockets = Sockets {
            first: 4,
            listeners: Vec::new(),
            streams: BTreeMap::new(),
            checked: true,
        };
        assert_eq!(sockets.free_stream_fd(), FIRST_STREAM);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        for fd in [FIRST_STREAM, FIRST_STREAM + 2] {
            let socket = TcpStream::connect(address).unwrap();
            sockets.streams.insert(
                fd,
                Stream {
                    socket,
                    nonblocking: false,
                },
            );
        }
        assert_eq!(sockets.free_stream_fd(), FIRST_STREAM + 1);
        assert!(sockets.owns(FIRST_STREAM + 2) && !sockets.owns(FIRST_STREAM + 1));
    }

    #[test]
    fn the_guest_fd_must_be_the_one_the_socket_gets() {
        let flag: Publish = "127.0.0.1:1:3".parse().unwrap();
        let err = Listeners::bind(&[flag], 1).err().unwrap().to_string();
        assert!(err.contains("the socket would be fd 4, not 3"), "{err}");
    }
}
