//! [`SmtpSink`]: a small SMTP server for trying and testing delivery on this machine. It is what
//! `courier sink --smtp` runs, what the integration tests send to, and what `courier bench --smtp`
//! measures against. Not a mail server: it keeps or prints what it receives and delivers nothing.
//!
//! It speaks plain SMTP, STARTTLS or implicit TLS (with a rustls server config you give it),
//! offers AUTH PLAIN and LOGIN when given users, records the EHLO name, TLS server name (SNI),
//! credentials and the DATA bytes, and can answer any command with a scripted reply once
//! (`451` to the next `RCPT`, `535` to the next `AUTH`...).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Secret;

/// How the sink secures connections.
#[derive(Clone, Default)]
pub enum SinkTls {
    /// Plain SMTP; STARTTLS is not offered.
    #[default]
    None,
    /// Plain SMTP offering STARTTLS with this server config.
    StartTls(Arc<rustls::ServerConfig>),
    /// TLS from the first byte.
    Implicit(Arc<rustls::ServerConfig>),
}

/// Called with each accepted mail.
pub type OnMail = Arc<dyn Fn(&Received) + Send + Sync>;

/// What the sink does.
#[derive(Clone, Default)]
pub struct SinkOptions {
    /// TLS mode.
    pub tls: SinkTls,
    /// Accepted `(user, password)` pairs; AUTH is offered only when there are some (or with
    /// `any_user`).
    pub users: Vec<(String, String)>,
    /// Offer AUTH and accept any credentials (for trying a config without its real password).
    pub any_user: bool,
    /// Keep every accepted mail for [`SmtpSink::received`] (tests); off for long runs.
    pub keep: bool,
    /// Called with each accepted mail (the CLI prints it).
    pub on_mail: Option<OnMail>,
}

/// Credentials a client authenticated with (the password shows as `***`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkAuth {
    /// `PLAIN` or `LOGIN`.
    pub mechanism: String,
    /// The user name.
    pub user: String,
    /// The password.
    pub password: Secret,
}

/// One accepted mail and how it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// The mail's number (1 for the first accepted).
    pub number: u64,
    /// The connection's number (1 for the first).
    pub connection: u64,
    /// The EHLO/HELO name.
    pub helo: String,
    /// Whether the connection was encrypted when the mail was sent.
    pub tls: bool,
    /// The server name the client asked for in the TLS handshake.
    pub sni: Option<String>,
    /// Successful authentication on this connection.
    pub auth: Option<SinkAuth>,
    /// The `MAIL FROM` address.
    pub mail_from: String,
    /// Every `RCPT TO` address.
    pub rcpt_to: Vec<String>,
    /// The message as received, dot-unstuffed, without the final `.` line.
    pub data: Vec<u8>,
}

#[derive(Default)]
struct State {
    connections: AtomicU64,
    mails: AtomicU64,
    received: Mutex<Vec<Received>>,
    rejected: Mutex<Vec<Vec<u8>>>,
    script: Mutex<VecDeque<(String, String)>>,
    log: Mutex<Vec<String>>,
}

/// A running sink; stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

const MAX_LINE: usize = 64 * 1024;
const MAX_DATA: usize = 32 * 1024 * 1024;

impl SmtpSink {
    /// Listens on `listen` (port 0 picks a free one) and serves until dropped.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(listen: SocketAddr, options: SinkOptions) -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let options = Arc::new(options);
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let n = st.connections.fetch_add(1, Ordering::SeqCst) + 1;
                let (st, options) = (st.clone(), options.clone());
                tokio::spawn(async move {
                    let _ = session(n, Box::new(tcp), &st, &options).await;
                });
            }
        });
        Ok(SmtpSink { addr, state, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Mails accepted so far.
    pub fn mails(&self) -> u64 {
        self.state.mails.load(Ordering::SeqCst)
    }

    /// The mails kept so far (with [`SinkOptions::keep`]).
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// The message data of mails refused by a scripted reply to the final `.` (with `keep`).
    pub fn rejected(&self) -> Vec<Vec<u8>> {
        lock(&self.state.rejected).clone()
    }

    /// Every command line received, in order (AUTH arguments shown as `***`).
    pub fn commands(&self) -> Vec<String> {
        lock(&self.state.log).clone()
    }

    /// Answers the next `verb` command (`EHLO`, `STARTTLS`, `AUTH`, `MAIL`, `RCPT`, `DATA`, or
    /// `.` for the end of the message data) with `reply` (e.g. `"451 4.3.0 try again"`), once.
    pub fn script(&self, verb: &str, reply: &str) {
        lock(&self.state.script).push_back((verb.to_ascii_uppercase(), reply.to_owned()));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn scripted(st: &State, verb: &str) -> Option<String> {
    let mut script = lock(&st.script);
    let i = script.iter().position(|(v, _)| v == verb)?;
    script.remove(i).map(|(_, r)| r)
}

async fn read_line(r: &mut BufReader<Box<dyn Stream>>) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 || !buf.ends_with(b"\n") {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&buf);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

async fn reply(r: &mut BufReader<Box<dyn Stream>>, text: &str) -> std::io::Result<()> {
    let w = r.get_mut();
    w.write_all(text.as_bytes()).await?;
    w.write_all(b"\r\n").await?;
    w.flush().await
}

fn negative(reply: &str) -> bool {
    !reply.starts_with('2') && !reply.starts_with('3')
}

fn address(arg: &str) -> String {
    let a = arg.split_once(':').map_or(arg, |(_, a)| a).trim();
    let a = a.split_whitespace().next().unwrap_or("");
    a.trim_start_matches('<').trim_end_matches('>').to_owned()
}

async fn session(
    n: u64,
    io: Box<dyn Stream>,
    st: &State,
    opt: &SinkOptions,
) -> std::io::Result<()> {
    let mut tls = false;
    let mut sni = None;
    let io: Box<dyn Stream> = match &opt.tls {
        SinkTls::Implicit(cfg) => {
            let s = tokio_rustls::TlsAcceptor::from(cfg.clone())
                .accept(io)
                .await?;
            tls = true;
            sni = s.get_ref().1.server_name().map(str::to_owned);
            Box::new(s)
        }
        _ => io,
    };
    let mut r = BufReader::new(io);
    reply(&mut r, "220 courier-sink ESMTP ready").await?;
    let mut helo = String::new();
    let mut auth: Option<SinkAuth> = None;
    let mut from: Option<String> = None;
    let mut rcpt: Vec<String> = Vec::new();
    while let Some(line) = read_line(&mut r).await? {
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.to_owned()),
            None => (line.to_ascii_uppercase(), String::new()),
        };
        lock(&st.log).push(if verb == "AUTH" {
            format!("AUTH {}", arg.split(' ').next().unwrap_or(""))
        } else {
            line.clone()
        });
        if let Some(r2) = scripted(st, &verb) {
            reply(&mut r, &r2).await?;
            if verb == "DATA" && !negative(&r2) {
                read_data(&mut r).await?;
            }
            if r2.starts_with("421") {
                return Ok(());
            }
            continue;
        }
        match verb.as_str() {
            "EHLO" | "HELO" => {
                helo = arg.trim().to_owned();
                from = None;
                rcpt.clear();
                let mut lines = vec![
                    "courier-sink".to_owned(),
                    "8BITMIME".into(),
                    "SMTPUTF8".into(),
                ];
                if matches!(opt.tls, SinkTls::StartTls(_)) && !tls {
                    lines.push("STARTTLS".into());
                }
                if !opt.users.is_empty() || opt.any_user {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                lines.push("SIZE 33554432".into());
                let last = lines.len() - 1;
                let text: Vec<String> = lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
                    .collect();
                reply(&mut r, &text.join("\r\n")).await?;
            }
            "STARTTLS" => {
                let SinkTls::StartTls(cfg) = &opt.tls else {
                    reply(&mut r, "502 5.5.1 STARTTLS not offered").await?;
                    continue;
                };
                if tls {
                    reply(&mut r, "503 5.5.1 already encrypted").await?;
                    continue;
                }
                reply(&mut r, "220 2.0.0 go ahead").await?;
                let inner = r.into_inner();
                let s = tokio_rustls::TlsAcceptor::from(cfg.clone())
                    .accept(inner)
                    .await?;
                sni = s.get_ref().1.server_name().map(str::to_owned);
                tls = true;
                r = BufReader::new(Box::new(s));
                helo.clear();
            }
            "AUTH" => {
                let got = read_auth(&mut r, &arg).await?;
                match got {
                    Some(a)
                        if opt.any_user
                            || opt
                                .users
                                .iter()
                                .any(|(u, p)| *u == a.user && p == a.password.expose()) =>
                    {
                        auth = Some(a);
                        reply(&mut r, "235 2.7.0 authenticated").await?;
                    }
                    _ => reply(&mut r, "535 5.7.8 authentication credentials invalid").await?,
                }
            }
            "MAIL" => {
                from = Some(address(&arg));
                rcpt.clear();
                reply(&mut r, "250 2.1.0 sender ok").await?;
            }
            "RCPT" if from.is_some() => {
                rcpt.push(address(&arg));
                reply(&mut r, "250 2.1.5 recipient ok").await?;
            }
            "DATA" if !rcpt.is_empty() => {
                reply(&mut r, "354 end data with <CR><LF>.<CR><LF>").await?;
                let data = read_data(&mut r).await?;
                let end = scripted(st, ".");
                match end {
                    Some(text) if negative(&text) => {
                        if opt.keep {
                            lock(&st.rejected).push(data);
                        }
                        reply(&mut r, &text).await?;
                    }
                    end => {
                        let m = st.mails.fetch_add(1, Ordering::SeqCst) + 1;
                        let got = Received {
                            number: m,
                            connection: n,
                            helo: helo.clone(),
                            tls,
                            sni: sni.clone(),
                            auth: auth.clone(),
                            mail_from: from.take().unwrap_or_default(),
                            rcpt_to: std::mem::take(&mut rcpt),
                            data,
                        };
                        if let Some(f) = &opt.on_mail {
                            f(&got);
                        }
                        if opt.keep {
                            lock(&st.received).push(got);
                        }
                        let text = end.unwrap_or_else(|| format!("250 2.0.0 queued as {m}"));
                        reply(&mut r, &text).await?;
                    }
                }
                from = None;
                rcpt.clear();
            }
            "RCPT" | "DATA" => reply(&mut r, "503 5.5.1 bad sequence of commands").await?,
            "RSET" => {
                from = None;
                rcpt.clear();
                reply(&mut r, "250 2.0.0 reset").await?;
            }
            "NOOP" => reply(&mut r, "250 2.0.0 ok").await?,
            "QUIT" => {
                reply(&mut r, "221 2.0.0 bye").await?;
                return Ok(());
            }
            _ => reply(&mut r, "502 5.5.2 command not recognized").await?,
        }
    }
    Ok(())
}

async fn read_data(r: &mut BufReader<Box<dyn Stream>>) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = (&mut *r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(data);
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if data.len() + line.len() > MAX_DATA {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        data.extend_from_slice(line);
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// Reads an AUTH exchange (the command's argument already read).
async fn read_auth(
    r: &mut BufReader<Box<dyn Stream>>,
    arg: &str,
) -> std::io::Result<Option<SinkAuth>> {
    let mut parts = arg.split_whitespace();
    let mech = parts.next().unwrap_or("").to_ascii_uppercase();
    let initial = parts.next().map(str::to_owned);
    match mech.as_str() {
        "PLAIN" => {
            let resp = match initial {
                Some(i) => i,
                None => {
                    reply(r, "334 ").await?;
                    read_line(r).await?.unwrap_or_default()
                }
            };
            let Some(raw) = b64(&resp) else {
                return Ok(None);
            };
            let fields: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            if fields.len() != 3 {
                return Ok(None);
            }
            Ok(Some(SinkAuth {
                mechanism: "PLAIN".into(),
                user: String::from_utf8_lossy(fields[1]).into_owned(),
                password: Secret::new(String::from_utf8_lossy(fields[2]).into_owned()),
            }))
        }
        "LOGIN" => {
            let user = match initial {
                Some(i) => i,
                None => {
                    reply(r, "334 VXNlcm5hbWU6").await?;
                    read_line(r).await?.unwrap_or_default()
                }
            };
            reply(r, "334 UGFzc3dvcmQ6").await?;
            let pass = read_line(r).await?.unwrap_or_default();
            let (Some(u), Some(p)) = (b64(&user), b64(&pass)) else {
                return Ok(None);
            };
            Ok(Some(SinkAuth {
                mechanism: "LOGIN".into(),
                user: String::from_utf8_lossy(&u).into_owned(),
                password: Secret::new(String::from_utf8_lossy(&p).into_owned()),
            }))
        }
        _ => Ok(None),
    }
}
