//! The baseline's server side: one listener per item on 127.0.0.1, a self-signed certificate,
//! mutual TLS 1.3 with any Ed25519 client key (the handshake signature is checked, as the
//! auction checks it), and per connection either the echo (this file) or the relay
//! (`relay.rs`), chosen by [`Mode`].
//!
//! It runs on its own tokio runtime (as many threads as cores) so that it does not share a
//! scheduler with the clients, or as a child process of this executable (`loadgen
//! echo-server`), as the auction server is a process of its own. The runtime owns every
//! connection task; nothing here waits for storage (there is none).

use super::relay::{self, Hub};
use anyhow::{Context, Result};
use auction_protocol::limits::MAX_LINE;
use futures_util::StreamExt;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{FramedRead, LinesCodec};

/// The first line the server sends, standing in for the auction's STATE.
const GREETING: &str = "{\"v\":1,\"type\":\"state\",\"req\":null,\"item\":{\"item\":1,\"description\":\"baseline\",\"seller\":\"echo\",\"min\":1000,\"highest\":null,\"bidder\":null,\"ends_at\":0,\"state\":\"open\",\"channel\":\"127.0.0.1:1\"},\"next_min\":1000,\"you\":\"echo\"}\n";

/// How long a TLS handshake may take.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server does with each line a connection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Writes it back to its sender, and nothing else.
    Echo,
    /// Writes it back to its sender and to every other connection of the same listener.
    Relay,
}

/// A running baseline server, in this process or as a child; it stops when dropped.
pub(super) enum Server {
    Child(EchoChild),
    InProcess(EchoServer),
}

impl Server {
    /// Starts `listeners` listeners in `mode`: as a child process of `exe`, or in this process.
    pub(super) fn start(
        exe: Option<&std::path::Path>,
        listeners: usize,
        mode: Mode,
    ) -> Result<Server> {
        Ok(match exe {
            Some(exe) => Server::Child(EchoChild::spawn(exe, listeners, mode)?),
            None => Server::InProcess(EchoServer::start(listeners, mode)?),
        })
    }

    /// The listeners' addresses, one per item.
    pub(super) fn addrs(&self) -> &[SocketAddr] {
        match self {
            Server::Child(c) => &c.addrs,
            Server::InProcess(s) => &s.addrs,
        }
    }

    /// The server's CPU seconds so far (user + system), when it is a child process whose
    /// /proc/PID/stat can be read; `None` in this process, where it cannot be told apart from
    /// the clients' CPU.
    pub(super) fn cpu_seconds(&self) -> Option<f64> {
        match self {
            Server::Child(c) => crate::cpu::process_seconds(c.child.id()),
            Server::InProcess(_) => None,
        }
    }

    /// True when the server runs inside loadgen's process (its CPU counts as loadgen's).
    pub(super) fn in_process(&self) -> bool {
        matches!(self, Server::InProcess(_))
    }

    /// The server's certificate, for the clients to trust.
    pub(super) fn cert(&self) -> &CertificateDer<'static> {
        match self {
            Server::Child(c) => &c.cert,
            Server::InProcess(s) => &s.cert,
        }
    }
}

/// What `loadgen echo-server` prints on its first line.
#[derive(serde::Serialize, serde::Deserialize)]
struct EchoHello {
    addrs: Vec<SocketAddr>,
    /// The echo server's self-signed certificate (DER, hex).
    cert: String,
}

/// `loadgen echo-server`: serves until its standard input closes (the parent exited or is
/// done), after printing where it listens and its certificate.
pub fn serve_echo_until_stdin_closes(listeners: usize, mode: Mode) -> Result<()> {
    use std::io::{Read, Write};
    let server = EchoServer::start(listeners, mode)?;
    let hello = EchoHello {
        addrs: server.addrs.clone(),
        cert: hex::encode(server.cert.as_ref()),
    };
    println!("{}", serde_json::to_string(&hello)?);
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(server);
    Ok(())
}

/// The echo server as a child process; it exits when this value is dropped (its stdin
/// closes), and is killed should it not.
pub(super) struct EchoChild {
    child: std::process::Child,
    addrs: Vec<SocketAddr>,
    cert: CertificateDer<'static>,
}

impl EchoChild {
    fn spawn(exe: &std::path::Path, listeners: usize, mode: Mode) -> Result<EchoChild> {
        use std::io::BufRead;
        let mut command = std::process::Command::new(exe);
        command.args(["echo-server", "--listeners", &listeners.to_string()]);
        if mode == Mode::Relay {
            command.arg("--fan-out");
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} echo-server", exe.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("no stdout")?;
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let hello: EchoHello = match serde_json::from_str(&line) {
            Ok(h) => h,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("the echo server did not start ({e}): {line:?}");
            }
        };
        let cert = hex::decode(&hello.cert).context("the echo server's certificate")?;
        Ok(EchoChild {
            child,
            addrs: hello.addrs,
            cert: CertificateDer::from(cert),
        })
    }
}

impl Drop for EchoChild {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server: one listener per item on 127.0.0.1, on its own runtime.
pub(super) struct EchoServer {
    addrs: Vec<SocketAddr>,
    cert: CertificateDer<'static>,
    /// The relay's connections of each listener (unused by the echo).
    hubs: Vec<Arc<Hub>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl EchoServer {
    fn start(listeners: usize, mode: Mode) -> Result<EchoServer> {
        let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .context("generating the echo server's certificate")?;
        let cert = generated.cert.der().clone();
        let chain = vec![cert.clone()];
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(AnyKeyVerifier {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_single_cert(chain, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("echo-server")
            .enable_all()
            .build()?;
        let (mut addrs, mut hubs) = (Vec::new(), Vec::new());
        // Bound here (registering with the echo runtime's reactor), not with block_on, which
        // may not be called from inside the caller's runtime.
        let _context = runtime.enter();
        for _ in 0..listeners.max(1) {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let listener: TcpListener = socket.listen(1024)?;
            addrs.push(listener.local_addr()?);
            let acceptor = acceptor.clone();
            // The relay's connections of this listener: an item's channel.
            let hub = Arc::new(Hub::default());
            hubs.push(hub.clone());
            runtime.spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, hub) = (acceptor.clone(), hub.clone());
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        let served = match mode {
                            Mode::Echo => serve(acceptor, tcp).await,
                            Mode::Relay => relay::serve(acceptor, tcp, &hub).await,
                        };
                        if let Err(e) = served {
                            tracing::debug!(error = %e, "baseline connection ended");
                        }
                    });
                }
            });
        }
        drop(_context);
        Ok(EchoServer {
            addrs,
            cert,
            hubs,
            runtime: Some(runtime),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let skipped: u64 = self.hubs.iter().map(|h| h.skipped()).sum();
        if skipped > 0 {
            tracing::info!(skipped, "the relay dropped copies for readers behind");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A server-side TLS connection of the baseline.
pub(super) type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// Completes the handshake, within [`HANDSHAKE_TIMEOUT`].
pub(super) async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream) -> Result<ServerTls> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .context("no TLS handshake in time")?
        .context("TLS handshake")
}

/// Says the first line: once a client has read it, the connection is served.
pub(super) async fn greet(tls: &mut ServerTls) -> Result<()> {
    tls.write_all(GREETING.as_bytes()).await?;
    tls.flush().await?;
    Ok(())
}

/// The echo: each line back to its sender, as soon as it is read.
async fn serve(acceptor: TlsAcceptor, tcp: TcpStream) -> Result<()> {
    let mut tls = handshake(&acceptor, tcp).await?;
    greet(&mut tls).await?;
    let (reader, mut writer) = tokio::io::split(tls);
    let mut lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(line) = lines.next().await {
        let mut line = line?;
        line.push('\n');
        writer.write_all(line.as_bytes()).await?;
        writer.flush().await?;
    }
    let _ = writer.shutdown().await;
    Ok(())
}

/// Takes any client certificate but checks the handshake signature, so the echo server does
/// the same public-key work per handshake as the auction server (minus the account lookup).
#[derive(Debug)]
struct AnyKeyVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyKeyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
