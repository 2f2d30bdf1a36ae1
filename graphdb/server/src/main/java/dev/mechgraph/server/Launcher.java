package dev.mechgraph.server;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermission;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.HexFormat;
import java.util.concurrent.CountDownLatch;
import org.neo4j.cli.AdminTool;
import org.neo4j.cli.ExecutionContext;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.SettingValueParsers;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.BoltConnectorInternalSettings;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.QueryExecutionException;
import org.neo4j.graphdb.config.Setting;
import org.neo4j.internal.kernel.api.exceptions.ProcedureException;
import org.neo4j.io.fs.DefaultFileSystemAbstraction;
import org.neo4j.kernel.api.procedure.GlobalProcedures;
import org.neo4j.kernel.internal.GraphDatabaseAPI;
import org.neo4j.kernel.internal.Version;

/**
 * Runs an embedded Neo4j Community DBMS for mechgraph, reachable only over Bolt on loopback.
 *
 * <p>The Python side starts this process, waits for the READY line on stdout, talks Bolt to it, and
 * stops it with SIGTERM. Protocol lines are deliberately tiny and stable: {@code MECHGRAPH-NEO4J
 * READY ...}, {@code MECHGRAPH-NEO4J STOPPED}, {@code MECHGRAPH-NEO4J ERROR ...} (stderr), and for a
 * bulk load ({@code --import-args FILE}: Neo4j's importer runs in this JVM first, then the DBMS starts
 * on the store it wrote) {@code MECHGRAPH-NEO4J IMPORTED in SECONDS s}.
 */
public final class Launcher {
    private static final String TAG = "MECHGRAPH-NEO4J ";
    /** Exit code for bad usage / bad password file: the caller's fault, retrying won't help. */
    private static final int EXIT_USAGE = 2;
    /** Exit code for a DBMS that could not be started (port in use, locked store, ...). */
    private static final int EXIT_START = 1;
    /** Neo4j's default dbms.security.auth_minimum_password_length. */
    private static final int MIN_PASSWORD_LENGTH = 8;
    /** Written after the first-run password bootstrap, so we know Bolt never exposed neo4j/neo4j. */
    private static final String BOOTSTRAP_MARKER = ".mechgraph-password-initialised";
    /** The marker's first line; its second is {@code sha256:HEX} of the password last applied. */
    private static final String MARKER_TEXT = "neo4j password set by mechgraph launcher\n";

    /** Guards {@link #running} and {@link #closing} between main and the shutdown hook. */
    private static final Object LOCK = new Object();
    private static DatabaseManagementService running;
    private static boolean closing;
    /** STOPPED is only promised to callers that saw READY. */
    private static volatile boolean ready;

    private Launcher() {}

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Fatal f) {
            fail(f.code, f.getMessage());
        }
    }

    /** A start-up problem that should end the process with one clear stderr line. */
    private static final class Fatal extends Exception {
        final int code;

        Fatal(int code, String message) {
            super(message);
            this.code = code;
        }
    }

    private static void run(String[] args) throws Fatal {
        if (args.length == 1 && args[0].equals("--version")) {
            // Read from the kernel's own metadata so it can never drift from the jars on the classpath.
            System.out.println(Version.getNeo4jVersion());
            System.out.flush();
            System.exit(0);
        }
        Map<String, String> opts = parseArgs(args);
        // Validate everything cheap before touching the file system.
        int port = parsePort(require(opts, "--bolt-port"));
        String password = readPassword(Paths.get(require(opts, "--password-file")));
        Path home = prepareHome(require(opts, "--home"));
        String listen = opts.getOrDefault("--listen-address", "127.0.0.1");
        long pageCache = parseBytes("--page-cache", opts.getOrDefault("--page-cache", "256m"));
        // Transaction memory: Neo4j's default cap is 70% of the heap, which on a big shared machine
        // lets one runaway query starve Python. Cap it at min(1 GiB, half the heap) unless told otherwise.
        long txMemory = opts.containsKey("--tx-memory")
                ? parseBytes("--tx-memory", opts.get("--tx-memory"))
                : Math.min(1L << 30, Runtime.getRuntime().maxMemory() / 2);

        // Native libraries bundled in the jars (netty epoll, zstd, snappy, JNA) extract themselves into
        // the temp dir. Point every temp dir at DIR/tmp so nothing is written outside DIR. This must
        // happen before any of those classes are loaded, i.e. before the DBMS is built.
        Path tmp = home.resolve("tmp");
        try {
            Files.createDirectories(tmp);
        } catch (IOException e) {
            throw new Fatal(EXIT_START, "cannot create " + tmp + ": " + e.getMessage());
        }
        System.setProperty("java.io.tmpdir", tmp.toString());
        System.setProperty("io.netty.native.workdir", tmp.toString());
        System.setProperty("jna.tmpdir", tmp.toString());
        System.setProperty("org.xerial.snappy.tempdir", tmp.toString());
        Path importDir = home.resolve("import");
        try {
            Files.createDirectories(importDir);
        } catch (IOException e) {
            throw new Fatal(EXIT_START, "cannot create " + importDir + ": " + e.getMessage());
        }
        // A bulk load: the importer writes the store offline, before any DBMS holds it. One JVM for
        // both saves a JVM start and the loading of the store classes they share.
        if (opts.containsKey("--import-args")) {
            runImport(home, Paths.get(opts.get("--import-args")));
        }

        Map<Setting<?>, Object> config = new HashMap<>();
        // Everything (data, transaction logs, debug.log) lives under DIR.
        config.put(GraphDatabaseSettings.logs_directory, home.resolve("logs"));
        config.put(GraphDatabaseSettings.data_directory, home.resolve("data"));
        // Anything that does not name its own address binds here; keep it on the listen address.
        config.put(GraphDatabaseSettings.default_listen_address, new SocketAddress(listen));
        config.put(BoltConnector.enabled, true);
        config.put(BoltConnector.listen_address, new SocketAddress(listen, port));
        config.put(BoltConnector.advertised_address, new SocketAddress(listen, port));
        // Loopback only, so TLS buys nothing and would force cert management on the Python side.
        config.put(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED);
        // The embedded DBMS does not start a web server, but say so explicitly in case it ever does.
        config.put(HttpConnector.enabled, false);
        config.put(HttpsConnector.enabled, false);
        // Server-side routing would open a second listener (:7688); a single instance needs none.
        config.put(GraphDatabaseSettings.routing_enabled, false);
        // Community phones home ("usage data collector") by default; this is a private local DB.
        config.put(GraphDatabaseSettings.udc_enabled, false);
        // Transaction logs are preallocated in 256 MiB files by default: half a GiB of zeros on
        // disk for a tiny project store. Let them grow instead.
        config.put(GraphDatabaseSettings.preallocate_logical_logs, false);
        config.put(GraphDatabaseSettings.auth_enabled, true);
        // The password is 32 random characters (192 bits) in a 0600 file: no online guessing gets
        // near it, so the failed-login lock-out protects nothing here. What it does do is let any
        // local process lock mechgraph out (three wrong passwords a second keep user neo4j locked
        // for good, with AuthenticationRateLimit). 0 turns the lock-out off.
        config.put(GraphDatabaseSettings.auth_max_failed_attempts, 0);
        // LOAD CSV must not read this user's files for whoever can send Cypher (Neo4j's default
        // lets file:///etc/passwd through). File URLs are refused outright; the import root is an
        // empty private directory in case a later Neo4j or a misconfiguration turns them back on.
        config.put(GraphDatabaseSettings.allow_file_urls, false);
        config.put(GraphDatabaseSettings.load_csv_file_url_root, importDir);
        // No procedure gets unrestricted (sandbox-bypassing) access; there is no APOC either.
        config.put(GraphDatabaseSettings.procedure_unrestricted, List.of());
        // Bolt stops only after the databases are checkpointed and closed, then lingers ~10 s for
        // connections/threads to drain. Nothing is left to protect by then; keep SIGTERM snappy.
        config.put(BoltConnectorInternalSettings.thread_pool_shutdown_wait_time, Duration.ofSeconds(1));
        config.put(BoltConnectorInternalSettings.connection_shutdown_wait_time, Duration.ofSeconds(1));
        config.put(GraphDatabaseSettings.pagecache_memory, pageCache);
        config.put(GraphDatabaseSettings.memory_transaction_global_max_size, txMemory);

        // Register the stop path before anything starts, so a SIGTERM at any point (even during the
        // first-run bootstrap) ends in a clean DBMS shutdown. SIGTERM/SIGINT, System.exit and a plain
        // JVM exit all run this hook, which checkpoints and closes the stores: no recovery next time.
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                synchronized (LOCK) {
                    closing = true;
                    stopRunning();
                }
                if (ready) {
                    System.out.println(TAG + "STOPPED");
                    System.out.flush();
                }
            } catch (Throwable t) {
                System.err.println(TAG + "ERROR shutdown failed: " + describe(t));
                System.err.flush();
                Runtime.getRuntime().halt(EXIT_START);
            } finally {
                stopped.countDown();
            }
        }, "mechgraph-neo4j-shutdown"));
        // By default the JVM reports death-by-SIGTERM as exit status 143. The caller asked us to stop,
        // so turn the signal into System.exit(0): the hook above still does the actual work.
        for (String sig : List.of("TERM", "INT")) {
            try {
                sun.misc.Signal.handle(new sun.misc.Signal(sig), s -> System.exit(0));
            } catch (Throwable ignored) {
                // Not fatal: the hook still runs, the exit status is just 128+signal instead of 0.
            }
        }

        // First run. A store whose system database does not exist yet: Neo4j reads data/dbms/auth.ini
        // (written by `dbms set-initial-password`) when it creates the system database, so user neo4j is
        // born with our password: one start, and the default credentials never exist. A system database
        // made without that marker (an older store): set the password with Bolt switched off first, so
        // there is never a moment where neo4j/neo4j is reachable.
        Path data = home.resolve("data");
        Path marker = data.resolve(BOOTSTRAP_MARKER);
        String digest = sha256(password);
        boolean applied = false;
        if (!Files.exists(marker)) {
            if (!Files.exists(data.resolve("databases").resolve(GraphDatabaseSettings.SYSTEM_DATABASE_NAME))) {
                // "--" ends the options: a password that starts with '-' (1 in 64 of the generated
                // ones) is the positional argument, not an unknown option.
                admin(home, new PrintStream(java.io.OutputStream.nullOutputStream()), "cannot set the initial password",
                        "dbms", "set-initial-password", "--", password);
            } else {
                Map<Setting<?>, Object> boot = new HashMap<>(config);
                boot.put(BoltConnector.enabled, false);
                setPassword(startRunning(home, boot), password);
                synchronized (LOCK) {
                    stopRunning();
                }
            }
            applied = true;
        } else {
            applied = digest.equals(markedDigest(marker));
        }

        // Every start re-applies a changed password, so editing the file and restarting rotates it
        // (the marker keeps the SHA-256 of the one last applied: an unchanged one costs no query).
        // On failure, fail() -> System.exit -> the hook shuts the DBMS down cleanly.
        DatabaseManagementService dbms = startRunning(home, config);
        if (!applied) {
            setPassword(dbms, password);
        }
        try {
            Files.writeString(marker, MARKER_TEXT + "sha256:" + digest + "\n");
        } catch (IOException e) {
            throw new Fatal(EXIT_START, "cannot write " + marker + ": " + e.getMessage());
        }
        registerProcedures(dbms);
        ready = true;
        String host = listen.contains(":") ? "[" + listen + "]" : listen;
        System.out.println(TAG + "READY bolt://" + host + ":" + port + " version=" + Version.getNeo4jVersion());
        System.out.flush();

        // Neo4j's threads keep the JVM alive anyway; park main so the intent is explicit.
        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Runs Neo4j's importer in this JVM with the arguments in {@code argsFile} (one a line). */
    private static void runImport(Path home, Path argsFile) throws Fatal {
        List<String> args;
        try {
            args = Files.readAllLines(argsFile, StandardCharsets.UTF_8).stream().filter(a -> !a.isEmpty()).toList();
        } catch (IOException e) {
            throw new Fatal(EXIT_USAGE, "cannot read the import arguments " + argsFile + ": " + e.getMessage());
        }
        long t0 = System.nanoTime();
        admin(home, System.out, "Neo4j's importer failed", args.toArray(new String[0]));
        System.out.printf(TAG + "IMPORTED in %.3f s%n", (System.nanoTime() - t0) / 1e9);
        System.out.flush();
    }

    /** Runs one neo4j-admin command in this JVM (NEO4J_HOME {@code home}, conf in home/conf), its output to {@code out}. */
    private static void admin(Path home, PrintStream out, String failure, String... args) throws Fatal {
        int code;
        try {
            code = AdminTool.execute(new ExecutionContext(home, home.resolve("conf"), out, System.err,
                    new DefaultFileSystemAbstraction()), args);
        } catch (Throwable t) {
            throw new Fatal(EXIT_START, failure + ": " + describe(t));
        }
        if (code != 0) {
            throw new Fatal(EXIT_START, failure + " (exit " + code + "; its output is above)");
        }
    }

    private static String sha256(String text) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The digest a marker records, or "" (a marker of an older launcher has none). */
    private static String markedDigest(Path marker) {
        try {
            return Files.readAllLines(marker, StandardCharsets.UTF_8).stream().filter(l -> l.startsWith("sha256:"))
                    .map(l -> l.substring("sha256:".length()).trim()).findFirst().orElse("");
        } catch (IOException e) {
            return "";
        }
    }

    /** Starts a DBMS and records it for the shutdown hook; refuses once shutdown has begun. */
    private static DatabaseManagementService startRunning(Path home, Map<Setting<?>, Object> config)
            throws Fatal {
        // Holding LOCK during start makes the hook wait for a half-started DBMS, then stop it.
        synchronized (LOCK) {
            if (closing) {
                throw new Fatal(EXIT_START, "shutdown requested during start-up");
            }
            running = start(home, config);
            return running;
        }
    }

    /** Caller holds LOCK. */
    private static void stopRunning() {
        if (running != null) {
            DatabaseManagementService d = running;
            running = null;
            d.shutdown();
        }
    }

    private static DatabaseManagementService start(Path home, Map<Setting<?>, Object> config) throws Fatal {
        DatabaseManagementService dbms;
        try {
            dbms = new DatabaseManagementServiceBuilder(home).setConfig(config).build();
        } catch (Throwable t) {
            throw new Fatal(EXIT_START, "failed to start Neo4j: " + describe(t));
        }
        // build() returns once the DBMS is up, but the default database may still be starting.
        if (!dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME).isAvailable(Duration.ofMinutes(2).toMillis())) {
            dbms.shutdown();
            throw new Fatal(EXIT_START, "default database did not become available (see " + home.resolve("logs/debug.log") + ")");
        }
        return dbms;
    }

    /**
     * Registers mechgraph's server-side procedures ({@link WriteProcedures}). The registry is global to
     * the DBMS, so registering through the default database covers every database; it has to happen
     * before READY so the Python side can rely on the procedures being there.
     */
    private static void registerProcedures(DatabaseManagementService dbms) throws Fatal {
        try {
            GraphDatabaseAPI db = (GraphDatabaseAPI) dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
            db.getDependencyResolver().resolveDependency(GlobalProcedures.class).registerProcedure(WriteProcedures.class);
        } catch (ProcedureException | RuntimeException e) {
            throw new Fatal(EXIT_START, "cannot register mechgraph procedures: " + describe(e));
        }
    }

    /**
     * Makes the neo4j user's password equal to {@code password}. Embedded transactions run with full
     * privileges, so the system database accepts the admin command without any login.
     */
    private static void setPassword(DatabaseManagementService dbms, String password) throws Fatal {
        try {
            dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $p CHANGE NOT REQUIRED", Map.of("p", password));
        } catch (QueryExecutionException e) {
            // On every restart the password is usually unchanged, and Neo4j refuses to "change" a
            // password to itself. That refusal proves the password is already right: not an error.
            String msg = String.valueOf(e.getMessage());
            if (!msg.contains("Old password and new password cannot be the same")) {
                throw new Fatal(EXIT_START, "cannot set password of user neo4j: " + msg);
            }
        } catch (RuntimeException e) {
            throw new Fatal(EXIT_START, "cannot set password of user neo4j: " + describe(e));
        }
    }

    /** First line of the file, trimmed; the file must not be accessible to group/others. */
    private static String readPassword(Path file) throws Fatal {
        if (!Files.isRegularFile(file)) {
            throw new Fatal(EXIT_USAGE, "password file " + file + " is missing or not a regular file");
        }
        try {
            Set<PosixFilePermission> perms = Files.getPosixFilePermissions(file);
            for (PosixFilePermission p : perms) {
                if (p.name().startsWith("GROUP_") || p.name().startsWith("OTHERS_")) {
                    throw new Fatal(EXIT_USAGE, "password file " + file + " has permissions "
                            + java.nio.file.attribute.PosixFilePermissions.toString(perms)
                            + "; it must not be accessible to group/others (chmod 600)");
                }
            }
            List<String> lines = Files.readAllLines(file, StandardCharsets.UTF_8);
            String pw = lines.isEmpty() ? "" : lines.get(0).trim();
            if (pw.isEmpty()) {
                throw new Fatal(EXIT_USAGE, "password file " + file + " is empty");
            }
            // Neo4j's default dbms.security.auth_minimum_password_length; fail before starting anything.
            if (pw.length() < MIN_PASSWORD_LENGTH) {
                throw new Fatal(EXIT_USAGE, "password in " + file + " is shorter than "
                        + MIN_PASSWORD_LENGTH + " characters, which Neo4j rejects");
            }
            return pw;
        } catch (IOException e) {
            throw new Fatal(EXIT_USAGE, "cannot read password file " + file + ": " + e.getMessage());
        } catch (UnsupportedOperationException e) {
            throw new Fatal(EXIT_USAGE, "cannot check permissions of " + file + " (not a POSIX file system)");
        }
    }

    private static Path prepareHome(String dir) throws Fatal {
        Path home = Paths.get(dir).toAbsolutePath().normalize();
        if (Files.exists(home, LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(home)) {
            throw new Fatal(EXIT_START, "home " + home + " exists and is not a directory");
        }
        try {
            Files.createDirectories(home);
        } catch (IOException e) {
            throw new Fatal(EXIT_START, "cannot create home " + home + ": " + e);
        }
        if (!Files.isWritable(home)) {
            throw new Fatal(EXIT_START, "home " + home + " is not writable");
        }
        return home;
    }

    private static Map<String, String> parseArgs(String[] args) throws Fatal {
        Set<String> known = Set.of("--home", "--bolt-port", "--password-file", "--listen-address",
                "--page-cache", "--tx-memory", "--heap-note", "--import-args");
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String key = args[i];
            String value;
            int eq = key.indexOf('=');
            if (key.startsWith("--") && eq > 0) {
                value = key.substring(eq + 1);
                key = key.substring(0, eq);
            } else if (i + 1 < args.length) {
                value = args[++i];
            } else {
                throw new Fatal(EXIT_USAGE, "option " + key + " needs a value\n" + usage());
            }
            if (!known.contains(key)) {
                throw new Fatal(EXIT_USAGE, "unknown option " + key + "\n" + usage());
            }
            opts.put(key, value);
        }
        return opts;
    }

    private static String require(Map<String, String> opts, String key) throws Fatal {
        String v = opts.get(key);
        if (v == null || v.isBlank()) {
            throw new Fatal(EXIT_USAGE, "missing required option " + key + "\n" + usage());
        }
        return v;
    }

    private static int parsePort(String s) throws Fatal {
        try {
            int p = Integer.parseInt(s.trim());
            if (p >= 1 && p <= 65535) {
                return p;
            }
        } catch (NumberFormatException ignored) {
            // fall through to the error below
        }
        throw new Fatal(EXIT_USAGE, "--bolt-port must be an integer in 1..65535, got '" + s + "'");
    }

    private static long parseBytes(String opt, String s) throws Fatal {
        try {
            return SettingValueParsers.BYTES.parse(s.trim());
        } catch (RuntimeException e) {
            throw new Fatal(EXIT_USAGE, opt + " must be a size like 256m or 1g, got '" + s + "'");
        }
    }

    private static String usage() {
        return "usage: Launcher --home DIR --bolt-port N --password-file FILE [--listen-address 127.0.0.1]"
                + " [--page-cache 256m] [--tx-memory SIZE] [--heap-note TEXT] [--import-args FILE]\n"
                + "       Launcher --version";
    }

    /** Neo4j wraps start-up failures several levels deep; the useful text is in the causes. */
    private static String describe(Throwable t) {
        StringBuilder sb = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
            String m = c.getMessage();
            String part = c.getClass().getSimpleName() + (m == null ? "" : ": " + m.replace('\n', ' '));
            if (sb.length() > 0) {
                sb.append(" <- ");
            }
            sb.append(part);
        }
        return sb.toString();
    }

    private static void fail(int code, String message) {
        PrintStream err = System.err;
        String[] lines = message.split("\n", 2);
        err.println(TAG + "ERROR " + lines[0]);
        if (lines.length > 1) {
            err.println(lines[1]);
        }
        err.flush();
        System.exit(code);
    }
}
