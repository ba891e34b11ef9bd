package imagebackend.search;

import org.opensearch.Version;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * One real OpenSearch node in this JVM, for tests and CI: the server's own {@link Node}
 * with the modules a distribution would load from modules/ given as classpath plugins
 * (Netty HTTP/transport, analysis-common, mapper-extras, reindex).
 *
 * <p>It is not started through OpenSearch's Bootstrap, so none of the production bootstrap
 * checks run (no refusal to run as root, no security manager, no jar-hell scan). It binds
 * to 127.0.0.1 only.
 *
 * <p>System properties (start.sh sets them):
 * <ul>
 *   <li>{@code search.home}: node home; data in home/data, logs in home/logs (default ./var)</li>
 *   <li>{@code search.http.port}: HTTP port (default 9200)</li>
 *   <li>{@code search.transport.port}: transport port or range (default 9300-9399)</li>
 *   <li>{@code search.cluster.name}: cluster name (default image_backend)</li>
 *   <li>{@code search.pidfile}: written with this JVM's pid, removed on exit</li>
 *   <li>{@code search.setting.X=V}: any further node setting X (e.g.
 *       {@code -Dsearch.setting.indices.query.bool.max_clause_count=4096})</li>
 * </ul>
 * A file home/config/opensearch.yml is read too; the settings here win over it.
 * Prints a line starting SEARCH_NODE_READY once the node serves requests (start.sh waits
 * for it). SIGTERM/SIGINT close the node cleanly.
 */
public final class SearchNode extends Node {

    static final List<Class<? extends Plugin>> PLUGINS = List.of(
        Netty4Plugin.class,
        CommonAnalysisPlugin.class,
        MapperExtrasPlugin.class,
        ReindexPlugin.class
    );

    private SearchNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
        super(environment, plugins, true);
    }

    public static void main(String[] args) {
        try {
            run();
        } catch (Throwable e) {
            e.printStackTrace();
            Throwable root = e;
            while (root.getCause() != null && root.getCause() != root) {
                root = root.getCause();
            }
            // one line for start.sh to show first
            System.out.println("SEARCH_NODE_FAILED " + root);
            System.exit(1);
        }
    }

    private static void run() throws Exception {
        long t0 = System.nanoTime();
        Path home = Paths.get(System.getProperty("search.home", "var")).toAbsolutePath().normalize();
        Path config = home.resolve("config");
        Files.createDirectories(config);
        String httpPort = System.getProperty("search.http.port", "9200");

        Settings.Builder settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", System.getProperty("search.cluster.name", "image_backend"))
            .put("node.name", "image_backend-search")
            .put("network.host", "127.0.0.1")
            .put("http.port", httpPort)
            .put("transport.port", System.getProperty("search.transport.port", "9300-9399"))
            .put("http.type", "netty4")
            .put("transport.type", "netty4")
            .put("discovery.type", "single-node")
            // a full CI disk must not turn indices read-only nor stop shard allocation
            .put("cluster.routing.allocation.disk.threshold_enabled", false);
        for (String name : System.getProperties().stringPropertyNames()) {
            if (name.startsWith("search.setting.")) {
                settings.put(name.substring("search.setting.".length()), System.getProperty(name));
            }
        }

        String pidFile = System.getProperty("search.pidfile");
        if (pidFile != null) {
            Files.write(Paths.get(pidFile), (ProcessHandle.current().pid() + "\n").getBytes(StandardCharsets.US_ASCII));
        }

        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            settings.build(), Map.of(), config, () -> "image_backend-search");
        Node node = new SearchNode(environment, PLUGINS);

        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                if (pidFile != null) {
                    try {
                        Files.deleteIfExists(Paths.get(pidFile));
                    } catch (Exception ignored) {
                        // nothing left to do
                    }
                }
                closed.countDown();
            }
        }, "search-node-shutdown"));

        node.start();
        // Replicas can never be assigned on one node: make 0 the default for indices created
        // without number_of_replicas, so their health is green. (As a node setting this is
        // not applied to new indices; it has to be a cluster setting.)
        node.client().admin().cluster().prepareUpdateSettings()
            .setPersistentSettings(Settings.builder().put("cluster.default_number_of_replicas", 0))
            .get();
        System.out.printf("SEARCH_NODE_READY OpenSearch %s on http://127.0.0.1:%s (node started in %.1fs)%n",
            Version.CURRENT, httpPort, (System.nanoTime() - t0) / 1e9);
        closed.await();
    }
}
