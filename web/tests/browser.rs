//! The dashboard in a real browser: headless Chromium driven through chromedriver, against
//! the router served on a loopback port and mounted under a prefix, as an application
//! would mount it.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install chromium
//! chromium-driver`); without them these tests fail and say so. With
//! `TASKMILL_SCREENSHOTS=write` the screenshot test also writes `docs/screenshots/*.png`.

mod common;

use common::{dead, enqueue, fire, memory, register};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use serde_json::json;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::{
    Clock, Manager, Queue, Schedule, Store, Task, TaskContext, TaskError, Timestamp,
};
use taskmill_web::{router, DashboardOptions};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where the dashboard is mounted in the application the tests serve.
const MOUNT: &str = "/admin/tasks";
/// How long a page may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(10);

/// One browser at a time: the machine running the suite may have two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A browser session on a dashboard served from a loopback port.
struct Session {
    client: Client,
    /// `http://127.0.0.1:PORT/admin/tasks`.
    base: String,
}

impl Session {
    async fn open(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The element `css` selects, once the page shows it.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .len()
    }

    async fn script(&self, js: &str) -> serde_json::Value {
        self.client
            .execute(js, vec![])
            .await
            .unwrap_or_else(|e| panic!("run {js}: {e}"))
    }

    /// Waits until the page's event stream is connected.
    async fn live(&self) {
        self.find(r#"#live[data-state="on"]"#).await;
    }

    /// Marks the loaded document, so a test can tell it was not reloaded.
    async fn mark(&self) {
        self.script("window.taskmillTestMark = 1;").await;
    }

    async fn is_marked(&self) -> bool {
        self.script("return window.taskmillTestMark === 1;").await == json!(true)
    }

    /// Whether an alert, confirm or prompt is open.
    async fn has_dialog(&self) -> bool {
        self.client.get_alert_text().await.is_ok()
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")];
        if std::env::var("TASKMILL_SCREENSHOTS").as_deref() == Ok("write") {
            dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"));
        }
        for dir in &dirs {
            std::fs::create_dir_all(dir).expect("a screenshot folder");
            std::fs::write(dir.join(name), &png).expect("write the screenshot");
        }
        dirs[0].join(name)
    }
}

/// Polls `check` every 50 ms until it holds, failing the test after [`PATIENCE`].
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn require(binary: &str) {
    assert!(
        Path::new(binary).exists(),
        "{binary} is missing: the browser tests need headless Chromium and its driver; \
         install them with `apt-get install chromium chromium-driver`"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

async fn start_driver() -> (Child, u16) {
    let port = free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (driver, port)
}

/// Serves `store`'s dashboard under [`MOUNT`] and runs `test` in a fresh headless
/// Chromium on it; the browser is closed whether the test passes or not.
async fn in_browser<F, Fut>(store: Arc<dyn Store>, test: F)
where
    F: FnOnce(Arc<Session>) -> Fut,
    Fut: Future<Output = ()>,
{
    in_browser_with(store, DashboardOptions::default(), test).await
}

/// [`in_browser`], with the dashboard's `options` (titled "Acme shop").
async fn in_browser_with<F, Fut>(store: Arc<dyn Store>, options: DashboardOptions, test: F)
where
    F: FnOnce(Arc<Session>) -> Fut,
    Fut: Future<Output = ()>,
{
    require(CHROMIUM);
    require(CHROMEDRIVER);
    let _one = ONE_BROWSER.lock().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let app = axum::Router::new().nest(MOUNT, router(store, options.title("Acme shop")));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (mut driver, port) = start_driver().await;
    let profile = tempfile::tempdir().expect("a browser profile folder");
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ]
    .map(String::from)
    .into_iter()
    .chain([format!("--user-data-dir={}", profile.path().display())])
    .collect::<Vec<_>>();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({ "binary": CHROMIUM, "args": args }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    let session = Arc::new(Session {
        client,
        base: format!("http://{addr}{MOUNT}"),
    });

    let outcome = AssertUnwindSafe(test(session.clone())).catch_unwind().await;
    let session = Arc::into_inner(session).expect("the test keeps no session");
    let _ = session.client.close().await;
    let _ = driver.kill().await;
    server.abort();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_shows_the_counts_and_keeps_them_current() {
    let (_, store) = memory();
    for i in 0..3 {
        enqueue(&*store, "emails", json!({ "i": i })).await;
    }
    dead(&*store, "thumbnails", 2, "bad image").await;
    in_browser(store.clone(), |s| async move {
        s.open("").await;
        assert_eq!(s.text(r#".summary [data-count="pending"]"#).await, "3");
        assert_eq!(s.text(r#".summary [data-count="scheduled"]"#).await, "0");
        assert_eq!(s.text(r#".summary [data-count="retrying"]"#).await, "0");
        assert_eq!(s.text(r#".summary [data-state="dead"]"#).await, "2");
        assert_eq!(s.text(r#".summary [data-count="failed"]"#).await, "2");
        assert_eq!(
            s.text(r#"tr[data-topic="emails"] [data-count="pending"]"#)
                .await,
            "3"
        );

        s.live().await;
        s.mark().await;
        enqueue(&*store, "emails", json!("more")).await;
        enqueue(&*store, "emails", json!("more")).await;
        let later = Task::new("emails", &json!("later"))
            .unwrap()
            .delay(Duration::from_secs(3600));
        store
            .enqueue(
                vec![later],
                &taskmill_core::store::EnqueueOptions::new(Timestamp::now()),
            )
            .await
            .unwrap();
        until("the pending count to reach 5", || async {
            s.text(r#".summary [data-count="pending"]"#).await == "5"
        })
        .await;
        until("the scheduled count to reach 1", || async {
            s.text(r#".summary [data-count="scheduled"]"#).await == "1"
        })
        .await;
        assert_eq!(
            s.text(r#"tr[data-topic="emails"] [data-count="pending"]"#)
                .await,
            "5"
        );
        assert!(s.is_marked().await, "updated without a reload");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_event_appears_without_a_reload() {
    let (_, store) = memory();
    in_browser(store.clone(), |s| async move {
        s.open("").await;
        assert_eq!(s.count("#events li[data-type]").await, 0);
        s.live().await;
        s.mark().await;
        let id = enqueue(&*store, "emails", json!({"to": "ada@example.com"})).await;
        let row = r#"#events li[data-type="TASK_ENQUEUE"]"#;
        assert_eq!(s.text(&format!("{row} .id")).await, format!("#{id}"));
        assert_eq!(s.text(&format!("{row} .topic")).await, "emails");
        assert!(s.is_marked().await, "shown without a reload");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_task_leaves_the_dead_tab() {
    let (_, store) = memory();
    let ids = dead(&*store, "thumbnails", 2, "bad image").await;
    let (retried, kept) = (ids[0], ids[1]);
    in_browser(store.clone(), |s| async move {
        s.open("/queues/dead").await;
        assert_eq!(s.text(r#".tab[aria-current="page"] .count"#).await, "2");
        s.click(&format!(r#"tr[data-id="{retried}"] button"#)).await;
        until("the retried row to leave the dead tab", || async {
            s.count(&format!(r#"tr[data-id="{retried}"]"#)).await == 0
        })
        .await;
        assert_eq!(s.count(&format!(r#"tr[data-id="{kept}"]"#)).await, 1);
        assert_eq!(s.text(r#".tab[aria-current="page"] .count"#).await, "1");
        let url = s.client.current_url().await.expect("a URL");
        assert_eq!(
            url.path(),
            format!("{MOUNT}/queues/dead"),
            "back on the dead tab"
        );
    })
    .await;
    assert_eq!(
        store.get(retried).await.unwrap().unwrap().queue,
        Queue::Input
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_task_is_cancelled_from_its_row_and_a_topics_waiting_ones_all_at_once() {
    let (_, store) = memory();
    let cancelled = enqueue(&*store, "emails", json!({"to": "ada@example.com"})).await;
    let kept = enqueue(&*store, "emails", json!({"to": "grace@example.com"})).await;
    let others: Vec<_> =
        futures_util::future::join_all((0..3).map(|i| enqueue(&*store, "reports", json!(i)))).await;
    in_browser(store.clone(), |s| async move {
        s.open("/queues/input?topic=emails").await;
        assert_eq!(s.text(r#".tab[aria-current="page"] .count"#).await, "2");
        s.click(&format!(
            r#"tr[data-id="{cancelled}"] form[action$="/tasks/{cancelled}/cancel"] button"#
        ))
        .await;
        until("the cancelled row to leave the pending tab", || async {
            s.count(&format!(r#"tr[data-id="{cancelled}"]"#)).await == 0
        })
        .await;
        assert_eq!(s.count(&format!(r#"tr[data-id="{kept}"]"#)).await, 1);
        assert_eq!(s.text(r#".tab[aria-current="page"] .count"#).await, "1");
        let url = s.client.current_url().await.expect("a URL");
        assert_eq!(
            url.path(),
            format!("{MOUNT}/queues/input"),
            "back on the tab"
        );
        assert_eq!(url.query(), Some("topic=emails"));
        s.open(&format!("/tasks/{cancelled}")).await;
        assert_eq!(s.text("#cancelled-by").await, "dashboard");

        // Every waiting task of a topic, after a confirmation.
        s.open("/queues/input?topic=reports").await;
        s.click("#cancel-all").await;
        assert_eq!(s.text("h1").await, "Cancel all waiting tasks?");
        s.click("form.inline-row button").await;
        assert_eq!(s.text(".notice").await, "Cancelled 3 waiting tasks.");
        assert_eq!(s.count("tr[data-id]").await, 0);
    })
    .await;
    assert_eq!(
        store.get(cancelled).await.unwrap().unwrap().queue,
        Queue::Cancelled
    );
    assert_eq!(store.get(kept).await.unwrap().unwrap().queue, Queue::Input);
    for id in others {
        assert_eq!(
            store.get(id).await.unwrap().unwrap().queue,
            Queue::Cancelled
        );
    }
}

/// A topic whose tasks wait with nobody claiming them is flagged on the overview as the
/// live stream's snapshots show it, without a reload, and on its queue page. The
/// dashboard reads a manual clock, moved past the threshold instead of waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_nobody_works_on_is_flagged() {
    let (_, store) = memory();
    enqueue(&*store, "invoices", json!({"account": 7})).await;
    let clock = Clock::manual(Timestamp::now() + Duration::from_secs(120));
    let options = DashboardOptions::default().clock(clock.clone());
    in_browser_with(store.clone(), options, |s| async move {
        s.open("").await;
        let badge = r#"tr[data-topic="invoices"] [data-unworked]"#;
        s.live().await;
        s.mark().await;
        assert!(
            !s.find(badge).await.is_displayed().await.unwrap(),
            "not yet"
        );
        clock.advance(Duration::from_secs(61));
        until("the no-worker badge to show", || async {
            s.find(badge).await.is_displayed().await.unwrap()
        })
        .await;
        assert!(s.is_marked().await, "shown without a reload");
        // The sentence is in the badge for screen readers, and on hover.
        let text = s.text(badge).await;
        assert!(text.starts_with("no worker"), "{text}");
        assert!(
            text.ends_with(
                ": no worker has taken a task for 1 min; is a manager running this topic?"
            ),
            "{text}"
        );
        let title = s.find(badge).await.attr("title").await.unwrap();
        assert_eq!(
            title.as_deref(),
            Some("no worker has taken a task for 1 min; is a manager running this topic?")
        );

        s.click(r#"tr[data-topic="invoices"] td.topic a"#).await;
        assert_eq!(
            s.text("#unworked").await,
            "no worker No worker has taken a task for 1 min; is a manager running this topic?"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_is_paused_and_resumed() {
    let (_, store) = memory();
    enqueue(&*store, "emails", json!(1)).await;
    in_browser(store.clone(), |s| async move {
        s.open("").await;
        let row = r#"tr[data-topic="emails"]"#;
        assert_eq!(s.text(&format!("{row} .badge.when-active")).await, "active");
        s.click(&format!("{row} .when-active button")).await;
        until("the store to say paused", || async {
            store
                .stats(&taskmill_core::store::StatsOptions::new(Timestamp::now()))
                .await
                .unwrap()
                .topic("emails")
                .paused
        })
        .await;
        assert_eq!(s.text(&format!("{row} .badge.when-paused")).await, "paused");
        assert_eq!(
            s.text(&format!("{row} .when-paused button")).await,
            "Resume"
        );
        s.click(&format!("{row} .when-paused button")).await;
        until("the store to say resumed", || async {
            !store
                .stats(&taskmill_core::store::StatsOptions::new(Timestamp::now()))
                .await
                .unwrap()
                .topic("emails")
                .paused
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xss_payload_stays_text() {
    let (_, store) = memory();
    let topic = "<img src=x onerror=window.taskmillXss=1>";
    let script = "<script>window.taskmillXss=2;alert(2)</script>";
    let id = dead(&*store, topic, 1, "<img src=x onerror=alert(3)>").await[0];
    let pending = enqueue(&*store, "emails", json!({ "html": script })).await;
    in_browser(store.clone(), |s| async move {
        let clean = |s: Arc<Session>| async move {
            assert!(!s.has_dialog().await, "no dialog opened");
            assert_eq!(
                s.script("return window.taskmillXss === undefined;").await,
                json!(true)
            );
        };
        s.open(&format!("/tasks/{pending}")).await;
        assert!(
            s.text("#args").await.contains(script),
            "the script shows as text"
        );
        clean(s.clone()).await;

        s.open(&format!("/tasks/{id}")).await;
        assert_eq!(s.text(".facts dd").await, topic);
        assert_eq!(s.text("pre.error").await, "<img src=x onerror=alert(3)>");
        clean(s.clone()).await;

        s.open("/queues/dead").await;
        assert_eq!(
            s.text(&format!(r#"tr[data-id="{id}"] .topic"#)).await,
            topic
        );
        clean(s.clone()).await;

        s.open("").await;
        assert_eq!(s.text("tr[data-topic] .topic").await, topic);
        s.live().await;
        enqueue(&*store, topic, json!(script)).await;
        assert_eq!(
            s.text(r#"#events li[data-type="TASK_ENQUEUE"] .topic"#)
                .await,
            topic
        );
        clean(s.clone()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_paused_from_the_schedules_page() {
    let (_, store) = memory();
    let hostile = "<img src=x onerror=window.taskmillXss=1>\"'&/ é";
    let every = |name: &str| {
        Schedule::every(
            name,
            Duration::from_secs(60),
            Task::new("reports", &1).unwrap(),
        )
        .unwrap()
    };
    let (nightly, odd) = (every("nightly"), every(hostile));
    register(&*store, &[&nightly, &odd]).await;
    let now = Timestamp::now();
    let fired = fire(&*store, &odd, now, now).await;
    in_browser(store.clone(), |s| async move {
        // From the task a schedule fired to its row on the schedules page.
        s.open(&format!("/tasks/{fired}")).await;
        assert!(s
            .text("#fired-by")
            .await
            .starts_with(&format!("schedule {hostile} at tick ")));
        s.click("#fired-by a").await;
        assert_eq!(s.text("tr.is-target .schedule-name").await, hostile);
        assert!(!s.has_dialog().await, "no dialog opened");
        assert_eq!(
            s.script("return window.taskmillXss === undefined;").await,
            json!(true)
        );

        let row = r#"tr[data-schedule="nightly"]"#;
        assert_eq!(s.text(&format!("{row} .badge")).await, "active");
        assert_eq!(s.text(&format!("{row} button")).await, "Pause");
        s.click(&format!("{row} button")).await;
        let paused = |name: &'static str| {
            let store = store.clone();
            async move {
                let all = store.schedules().await.unwrap();
                all.iter().find(|s| &*s.name == name).unwrap().paused
            }
        };
        until("the store to say paused", || paused("nightly")).await;
        assert_eq!(s.text(&format!("{row} .badge")).await, "paused");
        assert_eq!(s.text(&format!("{row} button")).await, "Resume");
        assert!(s
            .text(".notice")
            .await
            .starts_with("Paused schedule nightly"));
        let url = s.client.current_url().await.expect("a URL");
        assert_eq!(
            url.path(),
            format!("{MOUNT}/schedules"),
            "back on the schedules page"
        );
        assert!(!paused(hostile).await, "the other schedule goes on");

        // The overview's events name the schedule and tick of a fired enqueue, as text.
        s.open("").await;
        s.live().await;
        let next = now + Duration::from_secs(60);
        fire(&*store, &odd, next, next).await;
        let detail = s
            .text(r#"#events li[data-type="TASK_ENQUEUE"] .detail"#)
            .await;
        assert_eq!(detail, format!("schedule {hostile} · tick {next}"));
        assert!(!s.has_dialog().await, "no dialog opened");
        assert_eq!(
            s.script("return window.taskmillXss === undefined;").await,
            json!(true)
        );
    })
    .await;
}

/// A store with a manager working through three topics, some tasks failing, and four
/// schedules: two firing every few seconds, one monthly, one paused.
async fn busy_store() -> (Arc<dyn Store>, Manager) {
    let (_, store) = memory();
    let manager = Manager::builder_shared(store.clone())
        .concurrency(8)
        .default_retries(2)
        .build();
    manager
        .register("emails", |ctx: TaskContext| async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if ctx.id().get() % 19 == 0 && ctx.attempt() == 1 {
                return Err(TaskError::msg(
                    "SMTP 421: service not available, try again later",
                ));
            }
            Ok(())
        })
        .expect("register emails");
    manager
        .register("thumbnails", |ctx: TaskContext| async move {
            tokio::time::sleep(Duration::from_millis(80)).await;
            // Every 13th image of the feed (by its number, not the task's id, which the
            // schedules' tasks shift) is corrupt, from the first one on.
            let args: serde_json::Value = ctx.args()?;
            let image = args["image"]
                .as_str()
                .and_then(|path| path.rsplit('/').next()?.strip_suffix(".jpg")?.parse().ok());
            if image.is_some_and(|n: u64| n % 13 == 0) {
                return Err(TaskError::permanent(TaskError::msg(
                    "image decoder: unexpected end of file at byte 48213",
                )));
            }
            Ok(())
        })
        .expect("register thumbnails");
    manager
        .register("reports", |_: TaskContext| async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<(), TaskError>(())
        })
        .expect("register reports");
    let schedules = [
        Schedule::every(
            "digest-emails",
            Duration::from_secs(5),
            Task::new("emails", &json!({"template": "daily-digest"})).expect("a task"),
        ),
        Schedule::new(
            "thumbnail-cleanup",
            "*/10 * * * * *",
            Task::new("thumbnails", &json!({"sweep": "orphans"})).expect("a task"),
        ),
        Schedule::new(
            "monthly-invoices",
            "0 0 6 1 * *",
            Task::new("reports", &json!({"kind": "invoices"})).expect("a task"),
        )
        .and_then(|s| s.zone("Europe/Berlin")),
        Schedule::every(
            "webhook-redelivery",
            Duration::from_secs(60),
            Task::new("webhooks", &json!({"redeliver": "failed"})).expect("a task"),
        ),
    ];
    let schedules: Vec<Schedule> = schedules
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("valid schedules");
    for schedule in &schedules {
        manager
            .schedule(schedule.clone())
            .expect("register the schedule");
    }
    // Registered in the store before the manager's own (asynchronous) registration, so
    // one can be paused now; the manager's keeps the paused flag.
    register(&*store, &schedules.iter().collect::<Vec<_>>()).await;
    store
        .set_schedule_paused("webhook-redelivery", true)
        .await
        .expect("pause the schedule");
    enqueue(
        &*store,
        "webhooks",
        json!({"url": "https://example.com/hooks/orders", "event": "order.paid"}),
    )
    .await;
    store.set_paused("webhooks", true).await.expect("pause");
    // A topic no manager runs: its tasks wait, and the dashboard flags it.
    for account in [1042, 1043] {
        enqueue(
            &*store,
            "invoices",
            json!({"account": account, "month": "2026-05"}),
        )
        .await;
    }
    manager.start().await.expect("start");
    (store, manager)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_the_overview_a_queue_a_task_and_the_schedules() {
    let (store, manager) = busy_store().await;
    let producer = manager.clone();
    let feed = tokio::spawn(async move {
        for n in 0u64..2_000 {
            let mut batch = vec![taskmill_core::Task::new(
                "emails",
                &json!({"to": format!("customer{n}@example.com"), "template": "order-shipped"}),
            )];
            if n % 2 == 0 {
                batch.push(
                    taskmill_core::Task::new(
                        "thumbnails",
                        &json!({"image": format!("uploads/2026/05/{n}.jpg"), "sizes": [64, 256, 1024]}),
                    )
                    .and_then(|t| t.header("x-request-id", format!("req-{:08x}", n * 2_654_435_761 % (1 << 32))))
                    .and_then(|t| {
                        t.header(
                            "traceparent",
                            format!("00-4bf92f3577b34da6a3ce929d0e0e{n:04x}-00f067aa0ba902b7-01"),
                        )
                    }),
                );
            }
            if n % 8 == 0 {
                batch.push(taskmill_core::Task::new(
                    "reports",
                    &json!({"month": "2026-05", "account": n}),
                ));
            }
            let batch = batch
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .expect("valid tasks");
            if producer.enqueue_batch(batch).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(40 + (n * 37 % 60))).await;
        }
    });
    // A short threshold, so that the topic no manager runs is flagged within the test.
    let options = DashboardOptions::default().unworked_after(Duration::from_secs(4));
    in_browser_with(store.clone(), options, |s| async move {
        s.client
            .set_window_size(1280, 1040)
            .await
            .expect("a taller window");
        s.open("").await;
        s.live().await;
        // Long enough for the chart to draw a line of several seconds.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
        until("some throughput to show", || async {
            s.text("#rate-processed").await != "–"
        })
        .await;
        tokio::time::sleep_until(deadline).await;
        assert!(s.count("#events li[data-type]").await > 5, "events arrived");
        let badge = r#"tr[data-topic="invoices"] [data-unworked]"#;
        until("the topic no manager runs to be flagged", || async {
            s.find(badge).await.is_displayed().await.unwrap()
        })
        .await;
        s.screenshot("overview.png").await;

        s.open("/queues/input?topic=invoices").await;
        assert!(s.find("#unworked").await.is_displayed().await.unwrap());
        s.screenshot("unworked.png").await;

        s.open("/queues/dead").await;
        assert!(s.count("tr[data-id]").await > 0, "some tasks died");
        s.screenshot("queue.png").await;

        let id = s.text("tr[data-id] td a").await;
        s.open(&format!("/tasks/{id}")).await;
        assert_eq!(s.text(".page-head h1 .badge").await, "Dead");
        s.screenshot("task.png").await;

        until("two schedules to fire", || async {
            let all = store.schedules().await.unwrap();
            all.iter().filter(|s| s.last_task.is_some()).count() == 2
        })
        .await;
        s.open("/schedules").await;
        assert_eq!(s.count("tr[data-schedule]").await, 4);
        assert_eq!(s.count("tr[data-schedule] .last-task a").await, 2);
        s.screenshot("schedules.png").await;

        s.click(r#"tr[data-schedule="digest-emails"] .last-task a"#)
            .await;
        assert!(s
            .text("#fired-by")
            .await
            .starts_with("schedule digest-emails at tick "));
        s.screenshot("scheduled-task.png").await;
    })
    .await;
    feed.abort();
    manager.close().await.expect("close");
}
