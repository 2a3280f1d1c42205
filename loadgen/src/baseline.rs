//! The physical limit to compare against: a bare TLS 1.3 echo server inside loadgen, driven
//! like the auction.
//!
//! Same shape as an auction run: one listener per item, each bidder holds a mutual-TLS
//! connection (Ed25519 client certificate, handshake signature checked) to each of its items,
//! the server speaks first with one line, and each bidder sends bid-sized lines in a closed
//! loop, round-robin over its connections, waiting for the echo before the next. No storage,
//! no bidding rules, no broadcasts: what is left is TCP, TLS and the line framing, so the
//! auction's throughput can be stated as a fraction of what TLS on this machine does at all.
//!
//! The echo server runs on its own tokio runtime (as many threads as cores) so that it does
//! not share a scheduler with the clients, as a separate server process would not.

use crate::plan;
use crate::report::{
    Counts, Latencies, LatencyCurves, Machine, Report, RunConfigReport, Throughput,
};
use crate::stats::{Latency, PerSecond, Summary, Tally};
use anyhow::{Context, Result};
use auction_client::Identity;
use auction_protocol::channel::{encode_request, ChannelRequestBody};
use auction_protocol::limits::MAX_LINE;
use auction_protocol::Cents;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::{FramedRead, LinesCodec};

#[derive(Debug, Clone)]
pub struct Options {
    pub bidders: usize,
    pub items: usize,
    pub items_per_bidder: Option<usize>,
    pub duration: Duration,
    pub progress: bool,
    pub seed: u64,
    /// Run the echo server as a child process of this executable (`loadgen echo-server`), as
    /// the auction server is a process of its own; `None` runs it in this process (on its own
    /// runtime). A child also has its own open-files limit: 10,000 connections need 20,000
    /// descriptors when both ends live in one process.
    pub echo_exe: Option<std::path::PathBuf>,
}

pub struct Outcome {
    pub report: Report,
    pub round_trip: Histogram<u64>,
}

/// The first line the echo server sends, standing in for the auction's STATE.
const GREETING: &str = "{\"v\":1,\"type\":\"state\",\"req\":null,\"item\":{\"item\":1,\"description\":\"baseline\",\"seller\":\"echo\",\"min\":1000,\"highest\":null,\"bidder\":null,\"ends_at\":0,\"state\":\"open\",\"channel\":\"127.0.0.1:1\"},\"next_min\":1000,\"you\":\"echo\"}\n";

pub async fn run(opts: Options) -> Result<Outcome> {
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let layout = plan::Layout::new(opts.bidders, opts.items, opts.items_per_bidder);
    let (k, assignment) = (layout.per_bidder, &layout.assignment);

    // The echo server, and a client config per bidder trusting its certificate.
    let server = match &opts.echo_exe {
        Some(exe) => Echo::Child(EchoChild::spawn(exe, opts.items)?),
        None => Echo::InProcess(EchoServer::start(opts.items)?),
    };
    let (addrs, server_chain) = match &server {
        Echo::Child(c) => (c.addrs.clone(), vec![c.cert.clone()]),
        Echo::InProcess(s) => (s.addrs.clone(), vec![s.cert.clone()]),
    };

    let errors = Arc::new(Tally::default());
    let connect = Arc::new(Latency::default());
    let mut connectors = Vec::new();
    for _ in 0..opts.bidders {
        let identity = Identity::ephemeral()?;
        let (chain, key) = identity.tls_credentials();
        connectors.push(auction_client::channel::connector(
            &server_chain,
            chain,
            key,
        )?);
    }

    // Connections, as many at once as the auction run opens.
    let pairs: Vec<(usize, usize)> = assignment
        .iter()
        .enumerate()
        .flat_map(|(b, joined)| joined.iter().map(move |&i| (b, i)))
        .collect();
    let opened: Vec<(usize, Result<Conn>)> = futures_util::stream::iter(pairs)
        .map(|(b, i)| {
            let connector = connectors[b].clone();
            let addr = addrs[i];
            let connect = connect.clone();
            async move {
                let t = Instant::now();
                let r = Conn::open(&connector, addr).await;
                if r.is_ok() {
                    connect.record(t.elapsed());
                }
                (b, r)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut per_bidder: Vec<Vec<Conn>> = (0..opts.bidders).map(|_| Vec::new()).collect();
    for (b, r) in opened {
        match r {
            Ok(c) => per_bidder[b].push(c),
            Err(e) => {
                tracing::warn!(error = %e, "baseline connection failed");
                errors.add("connect");
            }
        }
    }

    let round_trip = Arc::new(Latency::default());
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let per_second = Arc::new(PerSecond::new(opts.duration.as_secs() as usize + 1));
    let start = Instant::now();
    let stop = start + opts.duration;
    let done = Arc::new(AtomicBool::new(false));
    let progress = opts.progress.then(|| {
        let (answered, round_trip, errors) = (answered.clone(), round_trip.clone(), errors.clone());
        tokio::spawn(crate::progress::line(
            start,
            opts.duration,
            done.clone(),
            move || {
                (
                    answered.load(Ordering::Relaxed),
                    round_trip.p99(),
                    errors.total(),
                )
            },
        ))
    });
    let mut tasks = Vec::new();
    for (b, mut conns) in per_bidder.into_iter().enumerate() {
        if conns.is_empty() {
            continue;
        }
        let (round_trip, sent, answered, per_second, errors) = (
            round_trip.clone(),
            sent.clone(),
            answered.clone(),
            per_second.clone(),
            errors.clone(),
        );
        let prefix = format!("lgbase{:06x}", opts.seed & 0xff_ffff);
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            let mut turn = 0;
            while Instant::now() < stop && !conns.is_empty() {
                turn = (turn + 1) % conns.len();
                seq += 1;
                // The same bytes a bid of the auction run takes on the wire.
                let line = encode_request(
                    seq,
                    ChannelRequestBody::Bid {
                        amount: Cents(1000 + seq),
                        id: Some(format!("{prefix}-{b}-{seq}")),
                    },
                );
                let t = Instant::now();
                sent.fetch_add(1, Ordering::Relaxed);
                match conns[turn].echo(&line).await {
                    Ok(at) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        round_trip.record(at.saturating_duration_since(t));
                        per_second.add(at.saturating_duration_since(start));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "baseline echo failed");
                        errors.add("echo");
                        conns.swap_remove(turn);
                    }
                }
            }
            for c in conns {
                c.close().await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    drop(server);

    let answered = answered.load(Ordering::Relaxed);
    let sent = sent.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(1e-9);
    let round_trip = round_trip.snapshot();
    let report = Report {
        schema: crate::report::SCHEMA.into(),
        kind: "baseline".into(),
        started_at,
        config: RunConfigReport {
            server: None,
            bidders: opts.bidders,
            items: opts.items,
            items_per_bidder: k,
            duration_s: opts.duration.as_secs_f64(),
            mode: "closed".into(),
            target_rate: None,
            seed: opts.seed,
            verify: false,
        },
        machine: Machine::this(),
        spread: layout.spread(),
        elapsed_s: (secs * 1000.0).round() / 1000.0,
        counts: Counts {
            sent,
            answered,
            unanswered: sent - answered,
            errors: errors.snapshot(),
            ..Counts::default()
        },
        throughput: Throughput {
            answered_per_s: (answered as f64 / secs).round(),
            per_second: per_second.values(elapsed.as_secs_f64().ceil() as usize),
            ..Throughput::default()
        },
        latency_us: Latencies {
            bid_round_trip: Summary::of(&round_trip),
            tls_connect: Summary::of(&connect.snapshot()),
            ..Latencies::default()
        },
        latency_curves_us: LatencyCurves::of(&round_trip, &crate::stats::new_histogram()),
        verify: None,
        server: None,
        notes: vec![],
    };
    Ok(Outcome { report, round_trip })
}

/// A client connection to the echo server.
struct Conn {
    reader: FramedRead<ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>, LinesCodec>,
    writer: WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>,
}

impl Conn {
    /// Connects, completes the handshake and reads the server's first line.
    async fn open(connector: &TlsConnector, addr: SocketAddr) -> Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
            .await
            .context("no TLS handshake within 10 s")??;
        let (reader, writer) = tokio::io::split(tls);
        let mut reader = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE));
        reader
            .next()
            .await
            .context("the echo server closed the connection")??;
        Ok(Conn { reader, writer })
    }

    /// Sends one line and returns when its echo was read.
    async fn echo(&mut self, line: &str) -> Result<Instant> {
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.flush().await?;
        let back = tokio::time::timeout(Duration::from_secs(30), self.reader.next())
            .await
            .context("no echo within 30 s")?
            .context("the echo server closed the connection")??;
        let at = Instant::now();
        anyhow::ensure!(
            back.len() + 1 == line.len(),
            "the echo differs from the line sent"
        );
        Ok(at)
    }

    async fn close(mut self) {
        let _ = self.writer.shutdown().await;
    }
}

enum Echo {
    Child(EchoChild),
    InProcess(EchoServer),
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
pub fn serve_echo_until_stdin_closes(listeners: usize) -> Result<()> {
    use std::io::{Read, Write};
    let server = EchoServer::start(listeners)?;
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
struct EchoChild {
    child: std::process::Child,
    addrs: Vec<SocketAddr>,
    cert: CertificateDer<'static>,
}

impl EchoChild {
    fn spawn(exe: &std::path::Path, listeners: usize) -> Result<EchoChild> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(exe)
            .args(["echo-server", "--listeners", &listeners.to_string()])
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

/// The echo server: one listener per item on 127.0.0.1, on its own runtime.
struct EchoServer {
    addrs: Vec<SocketAddr>,
    cert: CertificateDer<'static>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl EchoServer {
    fn start(listeners: usize) -> Result<EchoServer> {
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
        let mut addrs = Vec::new();
        // Bound here (registering with the echo runtime's reactor), not with block_on, which
        // may not be called from inside the caller's runtime.
        let _context = runtime.enter();
        for _ in 0..listeners.max(1) {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let listener: TcpListener = socket.listen(1024)?;
            addrs.push(listener.local_addr()?);
            let acceptor = acceptor.clone();
            runtime.spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        if let Err(e) = serve(acceptor, tcp).await {
                            tracing::debug!(error = %e, "echo connection ended");
                        }
                    });
                }
            });
        }
        drop(_context);
        Ok(EchoServer {
            addrs,
            cert,
            runtime: Some(runtime),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn serve(acceptor: TlsAcceptor, tcp: TcpStream) -> Result<()> {
    let tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await??;
    let (reader, mut writer) = tokio::io::split(tls);
    writer.write_all(GREETING.as_bytes()).await?;
    writer.flush().await?;
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
