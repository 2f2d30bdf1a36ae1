package dev.mechgraph.server;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.eclipse.collections.api.factory.primitive.IntSets;
import org.eclipse.collections.api.set.primitive.IntSet;
import org.eclipse.collections.impl.map.mutable.primitive.IntObjectHashMap;
import org.eclipse.collections.impl.set.mutable.primitive.IntHashSet;
import org.neo4j.exceptions.KernelException;
import org.neo4j.graphdb.Direction;
import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Transaction;
import org.neo4j.internal.kernel.api.CursorFactory;
import org.neo4j.internal.kernel.api.IndexQueryConstraints;
import org.neo4j.internal.kernel.api.IndexReadSession;
import org.neo4j.internal.kernel.api.InternalIndexState;
import org.neo4j.internal.kernel.api.NodeCursor;
import org.neo4j.internal.kernel.api.NodeValueIndexCursor;
import org.neo4j.internal.kernel.api.PropertyCursor;
import org.neo4j.internal.kernel.api.PropertyIndexQuery;
import org.neo4j.internal.kernel.api.Read;
import org.neo4j.internal.kernel.api.RelationshipTraversalCursor;
import org.neo4j.internal.kernel.api.SchemaRead;
import org.neo4j.internal.kernel.api.TokenRead;
import org.neo4j.internal.kernel.api.TokenWrite;
import org.neo4j.internal.kernel.api.Write;
import org.neo4j.internal.schema.IndexDescriptor;
import org.neo4j.internal.schema.IndexType;
import org.neo4j.internal.schema.SchemaDescriptors;
import org.neo4j.io.pagecache.context.CursorContext;
import org.neo4j.kernel.api.KernelTransaction;
import org.neo4j.kernel.api.exceptions.Status;
import org.neo4j.kernel.impl.coreapi.InternalTransaction;
import org.neo4j.memory.MemoryTracker;
import org.neo4j.procedure.Context;
import org.neo4j.procedure.Description;
import org.neo4j.procedure.Mode;
import org.neo4j.procedure.Name;
import org.neo4j.procedure.Procedure;
import org.neo4j.storageengine.api.PropertySelection;
import org.neo4j.storageengine.api.RelationshipSelection;
import org.neo4j.values.storable.Value;
import org.neo4j.values.storable.Values;

/**
 * Bulk MERGE procedures for mechgraph.
 *
 * <p>Cypher's {@code UNWIND $rows ... MERGE} costs ~25 µs per row in Community's slotted runtime;
 * these do the same work column-wise for a whole batch in one call. Registered by {@link Launcher}
 * in the embedded DBMS; the jar also works as a drop-in plugin for a Neo4j 5.26 server (it needs
 * nothing beyond Neo4j's own classes, and no "unrestricted" setting: only the public
 * {@link Transaction} is injected).
 *
 * <p>The hot loops use the kernel API behind the procedure's {@link Transaction} (the same
 * transaction, so the same security checks, transaction state and rollback apply): token ids are
 * resolved once per call, the uniqueness-constraint index session and all cursors are reused across
 * rows, and existing entities get one property read and writes only for values that changed (a
 * re-run of the same rows leaves an empty transaction). Node lookup without such an index falls back
 * to {@link Transaction#findNode}.
 *
 * <p>Nodes are identified by (label, {@code key}). Errors thrown here carry a Neo4j status, so the
 * client sees our message unchanged (as {@code Neo.ClientError.Procedure.ProcedureCallFailed})
 * instead of a "Failed to invoke procedure" wrapper; any error fails the call and rolls back the
 * whole transaction.
 */
public class WriteProcedures {
    /** The property that identifies a node within its key label. */
    public static final String KEY = "key";

    private static final Pattern NAME = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*");

    @Context
    public Transaction tx;

    /** One result row per call. */
    public static class WriteResult {
        /** Rows processed (= size of the input key lists). */
        public long written;
        /** Nodes or relationships that did not exist before and were created. */
        public long created;

        public WriteResult(long written, long created) {
            this.written = written;
            this.created = created;
        }
    }

    /**
     * A failure the caller caused (a bad argument, or rows naming missing endpoint nodes, whose message
     * starts with "MissingEndpoint:"); the message is shown to the client as is and the call rolls back.
     */
    public static final class InvalidArgument extends IllegalArgumentException implements Status.HasStatus {
        private static final long serialVersionUID = 1L;

        public InvalidArgument(String message) {
            super(message);
        }

        @Override
        public Status status() {
            return Status.Procedure.ProcedureCallFailed;
        }
    }

    /** A kernel error (e.g. a constraint violation), passed on with its own status and message. */
    public static final class KernelFailure extends RuntimeException implements Status.HasStatus {
        private static final long serialVersionUID = 1L;
        private final Status status;

        KernelFailure(KernelException e) {
            super(e.getMessage(), e);
            this.status = e.status();
        }

        @Override
        public Status status() {
            return status;
        }
    }

    @Procedure(name = "mechgraph.mergeNodes", mode = Mode.WRITE)
    @Description("mechgraph.mergeNodes(keyLabel, extraLabels, common, keys, columns): MERGE (n:keyLabel {key: keys[i]}),"
            + " add extraLabels, SET n += common, SET n.name = columns[name][i] for non-null values.")
    public Stream<WriteResult> mergeNodes(
            @Name("keyLabel") String keyLabel,
            @Name("extraLabels") List<String> extraLabels,
            @Name("common") Map<String, Object> common,
            @Name("keys") List<String> keys,
            @Name("columns") Map<String, Object> columns) {
        checkName("keyLabel", keyLabel);
        List<String> extraNames = new ArrayList<>();
        if (extraLabels != null) {
            for (String l : extraLabels) {
                checkName("extraLabels", l);
                if (!l.equals(keyLabel) && !extraNames.contains(l)) {
                    extraNames.add(l);
                }
            }
        }
        requireNonNull("keys", keys);
        int n = keys.size();
        Props props = new Props(common, columns, n);
        if (props.index(KEY) >= 0) {
            throw new InvalidArgument("mergeNodes: '" + KEY + "' is the identifying property; it cannot appear in common or columns");
        }
        for (int i = 0; i < n; i++) {
            if (keys.get(i) == null) {
                throw new InvalidArgument("mergeNodes: keys[" + i + "] is null");
            }
        }
        try (Kernel k = new Kernel(tx)) {
            int labelId = k.tokenWrite.labelGetOrCreateForName(keyLabel);
            int keyId = k.tokenWrite.propertyKeyGetOrCreateForName(KEY);
            int[] extraIds = new int[extraNames.size()];
            for (int j = 0; j < extraIds.length; j++) {
                extraIds[j] = k.tokenWrite.labelGetOrCreateForName(extraNames.get(j));
            }
            int[] allLabels = new int[extraIds.length + 1];
            allLabels[0] = labelId;
            System.arraycopy(extraIds, 0, allLabels, 1, extraIds.length);
            IntSet newLabels = IntSets.immutable.of(allLabels);
            IntSet noLabels = IntSets.immutable.empty();
            int[] propIds = props.tokenIds(k.tokenWrite);
            NodeLookup lookup = new NodeLookup(k, tx, keyLabel, labelId, keyId, true);

            long created = 0;
            for (int i = 0; i < n; i++) {
                String key = keys.get(i);
                long node = lookup.find(key);
                IntObjectHashMap<Value> changes = new IntObjectHashMap<>();
                if (node < 0) {
                    node = k.write.nodeCreate();
                    changes.put(keyId, Values.utf8Value(key));
                    props.putAll(changes, propIds, i);
                    k.write.nodeApplyChanges(node, newLabels, noLabels, changes);
                    created++;
                } else {
                    k.read.singleNode(node, k.nodeA);
                    if (!k.nodeA.next()) {
                        throw new IllegalStateException("node " + node + " for key " + key + " vanished");
                    }
                    IntSet addLabels = noLabels;
                    for (int x : extraIds) {
                        if (!k.nodeA.hasLabel(x)) {
                            if (addLabels == noLabels) {
                                addLabels = new IntHashSet();
                            }
                            ((IntHashSet) addLabels).add(x);
                        }
                    }
                    props.putChanged(changes, propIds, i, k, k.nodeA, null);
                    if (!addLabels.isEmpty() || !changes.isEmpty()) {
                        k.write.nodeApplyChanges(node, addLabels, noLabels, changes);
                    }
                }
            }
            return Stream.of(new WriteResult(n, created));
        } catch (KernelException e) {
            throw new KernelFailure(e);
        }
    }

    @Procedure(name = "mechgraph.mergeRelationships", mode = Mode.WRITE)
    @Description("mechgraph.mergeRelationships(type, srcLabel, dstLabel, identity, common, src, dst, columns):"
            + " MATCH (a:srcLabel {key: src[i]}), (b:dstLabel {key: dst[i]}) MERGE (a)-[r:type {identity props}]->(b)"
            + " SET r += row props. Fails with 'MissingEndpoint: ...' (rolling back everything) if any endpoint is missing.")
    public Stream<WriteResult> mergeRelationships(
            @Name("type") String type,
            @Name("srcLabel") String srcLabel,
            @Name("dstLabel") String dstLabel,
            @Name("identity") List<String> identity,
            @Name("common") Map<String, Object> common,
            @Name("src") List<String> src,
            @Name("dst") List<String> dst,
            @Name("columns") Map<String, Object> columns) {
        return writeRelationships(type, srcLabel, dstLabel, identity, common, src, dst, columns, false);
    }

    @Procedure(name = "mechgraph.createRelationships", mode = Mode.WRITE)
    @Description("mechgraph.createRelationships(type, srcLabel, dstLabel, identity, common, src, dst, columns):"
            + " as mergeRelationships, but CREATE without looking for an existing relationship. Only for a caller"
            + " that knows none exists (a new graph's relationships, each pair once): no degree walk per row.")
    public Stream<WriteResult> createRelationships(
            @Name("type") String type,
            @Name("srcLabel") String srcLabel,
            @Name("dstLabel") String dstLabel,
            @Name("identity") List<String> identity,
            @Name("common") Map<String, Object> common,
            @Name("src") List<String> src,
            @Name("dst") List<String> dst,
            @Name("columns") Map<String, Object> columns) {
        return writeRelationships(type, srcLabel, dstLabel, identity, common, src, dst, columns, true);
    }

    private Stream<WriteResult> writeRelationships(String type, String srcLabel, String dstLabel, List<String> identity,
            Map<String, Object> common, List<String> src, List<String> dst, Map<String, Object> columns, boolean create) {
        checkName("type", type);
        checkName("srcLabel", srcLabel);
        checkName("dstLabel", dstLabel);
        requireNonNull("src", src);
        requireNonNull("dst", dst);
        int n = src.size();
        if (dst.size() != n) {
            throw new InvalidArgument("mergeRelationships: src has " + n + " values but dst has " + dst.size());
        }
        Props props = new Props(common, columns, n);
        int nIds = identity == null ? 0 : identity.size();
        int[] idSlots = new int[nIds];
        for (int j = 0; j < nIds; j++) {
            String name = checkName("identity", identity.get(j));
            idSlots[j] = props.index(name);
            if (idSlots[j] < 0) {
                throw new InvalidArgument("mergeRelationships: identity property '" + name + "' is in neither common nor columns");
            }
        }
        for (int i = 0; i < n; i++) {
            if (src.get(i) == null || dst.get(i) == null) {
                throw new InvalidArgument("mergeRelationships: " + (src.get(i) == null ? "src" : "dst") + "[" + i + "] is null");
            }
            for (int j = 0; j < nIds; j++) {
                if (props.value(idSlots[j], i) == null) {
                    throw new InvalidArgument("mergeRelationships: identity property '" + props.names[idSlots[j]]
                            + "' is null in row " + i + " (" + src.get(i) + " -> " + dst.get(i) + ")");
                }
            }
        }

        try (Kernel k = new Kernel(tx)) {
            TokenRead tokens = k.tokenRead;
            NodeLookup srcLookup = new NodeLookup(k, tx, srcLabel, tokens.nodeLabel(srcLabel), tokens.propertyKey(KEY), false);
            NodeLookup dstLookup = srcLabel.equals(dstLabel) ? srcLookup
                    : new NodeLookup(k, tx, dstLabel, tokens.nodeLabel(dstLabel), tokens.propertyKey(KEY), false);

            // Resolve every endpoint first: a missing one fails the call before anything is written.
            long[] as = new long[n];
            long[] bs = new long[n];
            int missing = 0;
            String example = null;
            for (int i = 0; i < n; i++) {
                as[i] = srcLookup.find(src.get(i));
                bs[i] = dstLookup.find(dst.get(i));
                if (as[i] < 0 || bs[i] < 0) {
                    if (missing++ == 0) {
                        example = src.get(i) + " -> " + dst.get(i) + " (no :"
                                + (as[i] < 0 ? srcLabel + " {key: " + src.get(i) : dstLabel + " {key: " + dst.get(i)) + "})";
                    }
                }
            }
            if (missing > 0) {
                throw new InvalidArgument("MissingEndpoint: " + missing + " of " + n + " rows name a missing endpoint node, e.g. "
                        + example + "; nothing was written");
            }

            int typeId = k.tokenWrite.relationshipTypeGetOrCreateForName(type);
            int[] propIds = props.tokenIds(k.tokenWrite);
            int[] idKeys = new int[nIds];
            for (int j = 0; j < nIds; j++) {
                idKeys[j] = propIds[idSlots[j]];
            }
            PropertySelection idSelection = PropertySelection.selection(idKeys);
            RelationshipSelection outgoing = RelationshipSelection.selection(typeId, Direction.OUTGOING);
            RelationshipSelection incoming = RelationshipSelection.selection(typeId, Direction.INCOMING);
            Value[] wanted = new Value[nIds];

            long created = 0;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < nIds; j++) {
                    wanted[j] = props.value(idSlots[j], i);
                }
                long rel = create ? -1 : findRelationship(k, as[i], bs[i], outgoing, incoming, idKeys, idSelection, wanted);
                IntObjectHashMap<Value> changes = new IntObjectHashMap<>();
                if (rel < 0) {
                    rel = k.write.relationshipCreate(as[i], typeId, bs[i]);
                    props.putAll(changes, propIds, i);
                    created++;
                } else {
                    // k.rels is still positioned on the match: read its properties once, write only changes.
                    props.putChanged(changes, propIds, i, k, null, k.rels);
                }
                if (!changes.isEmpty()) {
                    k.write.relationshipApplyChanges(rel, changes);
                }
            }
            return Stream.of(new WriteResult(n, created));
        } catch (KernelException e) {
            throw new KernelFailure(e);
        }
    }

    /** How many relationships a walk of a sparse endpoint may visit before degrees are counted. */
    private static final int WALK_BUDGET = 64;

    /**
     * Id of an existing a-[type]->b relationship whose identity properties equal {@code wanted}
     * (Neo4j value equality, so 1 = 1.0 as in Cypher's MERGE), or -1. On success {@code k.rels} is
     * left positioned on it. Transaction state is included, so relationships created earlier in this
     * transaction are found.
     *
     * <p>Walks the endpoint with the smaller degree for the type and direction (a's outgoing vs b's
     * incoming). On a dense node that degree is a cheap count, but on a sparse one (the store keeps at
     * most ~50 relationships in one chain) counting is a walk of the whole chain, as costly as the
     * search itself. So unless both are dense, first walk a sparse endpoint directly, within a budget;
     * only if that walk is long (many relationships added in this transaction) count both degrees
     * and walk the smaller side.
     */
    private static long findRelationship(Kernel k, long a, long b, RelationshipSelection outgoing,
            RelationshipSelection incoming, int[] idKeys, PropertySelection idSelection, Value[] wanted) {
        k.read.singleNode(a, k.nodeA);
        k.read.singleNode(b, k.nodeB);
        if (!k.nodeA.next() || !k.nodeB.next()) {
            return -1;
        }
        boolean denseA = k.nodeA.supportsFastDegreeLookup();
        boolean denseB = k.nodeB.supportsFastDegreeLookup();
        if (!denseA || !denseB) {
            boolean fromA = !denseA && denseB;
            long found = walk(k, fromA ? k.nodeA : k.nodeB, fromA ? outgoing : incoming, fromA ? b : a,
                    idKeys, idSelection, wanted, WALK_BUDGET);
            if (found != OVER_BUDGET) {
                return found;
            }
        }
        int degA = k.nodeA.degree(outgoing);
        if (degA == 0) {
            return -1;
        }
        int degB = k.nodeB.degreeWithMax(degA, incoming);
        if (degB == 0) {
            return -1;
        }
        boolean fromA = degA <= degB;
        return walk(k, fromA ? k.nodeA : k.nodeB, fromA ? outgoing : incoming, fromA ? b : a,
                idKeys, idSelection, wanted, Integer.MAX_VALUE);
    }

    private static final long OVER_BUDGET = -2;

    /** Searches {@code node}'s relationships in {@code selection} for one to {@code other} with the identity. */
    private static long walk(Kernel k, NodeCursor node, RelationshipSelection selection, long other, int[] idKeys,
            PropertySelection idSelection, Value[] wanted, int budget) {
        node.relationships(k.rels, selection);
        int seen = 0;
        while (k.rels.next()) {
            if (++seen > budget) {
                return OVER_BUDGET;
            }
            if (k.rels.otherNodeReference() != other) {
                continue;
            }
            if (idKeys.length == 0) {
                return k.rels.relationshipReference();
            }
            int matched = 0;
            k.rels.properties(k.props, idSelection);
            while (k.props.next()) {
                int key = k.props.propertyKey();
                for (int j = 0; j < idKeys.length; j++) {
                    if (idKeys[j] == key) {
                        if (wanted[j].equals(k.props.propertyValue())) {
                            matched++;
                        }
                        break;
                    }
                }
            }
            if (matched == idKeys.length) {
                return k.rels.relationshipReference();
            }
        }
        return -1;
    }

    /** The kernel side of the procedure's transaction, with the cursors one call reuses. */
    private static final class Kernel implements AutoCloseable {
        final KernelTransaction ktx;
        final Read read;
        final Write write;
        final TokenRead tokenRead;
        final TokenWrite tokenWrite;
        final SchemaRead schemaRead;
        final CursorFactory cursors;
        final CursorContext cursorContext;
        final MemoryTracker memory;
        final NodeCursor nodeA;
        final NodeCursor nodeB;
        final RelationshipTraversalCursor rels;
        final PropertyCursor props;
        private final List<AutoCloseable> toClose = new ArrayList<>();

        Kernel(Transaction tx) throws KernelException {
            if (!(tx instanceof InternalTransaction itx)) {
                throw new IllegalStateException("unexpected transaction class " + tx.getClass().getName());
            }
            ktx = itx.kernelTransaction();
            read = ktx.dataRead();
            write = ktx.dataWrite();
            tokenRead = ktx.tokenRead();
            tokenWrite = ktx.tokenWrite();
            schemaRead = ktx.schemaRead();
            cursors = ktx.cursors();
            cursorContext = ktx.cursorContext();
            memory = ktx.memoryTracker();
            nodeA = track(cursors.allocateNodeCursor(cursorContext, memory));
            nodeB = track(cursors.allocateNodeCursor(cursorContext, memory));
            rels = track(cursors.allocateRelationshipTraversalCursor(cursorContext, memory));
            props = track(cursors.allocatePropertyCursor(cursorContext, memory));
        }

        <T extends AutoCloseable> T track(T c) {
            toClose.add(c);
            return c;
        }

        @Override
        public void close() {
            for (AutoCloseable c : toClose) {
                try {
                    c.close();
                } catch (Exception ignored) {
                    // cursors do not fail on close; the transaction cleans up anyway
                }
            }
        }
    }

    /**
     * Finds node ids by (label, key). Uses the ONLINE range index on :label(key) (what a uniqueness
     * constraint creates); without one it falls back to {@link Transaction#findNode}. Lookups repeat a
     * lot within a batch (one feature feeds many edges), so results are cached per call; for
     * relationships that is safe because nothing deletes nodes in between.
     */
    private static final class NodeLookup {
        private final Kernel k;
        private final Transaction tx;
        private final Label label;
        private final int keyId;
        private final boolean merging;
        private final IndexDescriptor index;
        private final IndexReadSession session;
        private final NodeValueIndexCursor cursor;
        private final Map<String, Long> cache;

        NodeLookup(Kernel k, Transaction tx, String labelName, int labelId, int keyId, boolean merging)
                throws KernelException {
            this.k = k;
            this.tx = tx;
            this.label = Label.label(labelName);
            this.keyId = keyId;
            this.merging = merging;
            // mergeNodes sees each key's node created in this call via the index (tx state); no cache needed.
            this.cache = merging ? null : new HashMap<>();
            IndexDescriptor found = null;
            if (labelId >= 0 && keyId >= 0) {
                Iterator<IndexDescriptor> it = k.schemaRead.index(SchemaDescriptors.forLabel(labelId, keyId));
                while (it.hasNext()) {
                    IndexDescriptor d = it.next();
                    if (d.getIndexType() == IndexType.RANGE
                            && k.schemaRead.indexGetStateNonLocking(d) == InternalIndexState.ONLINE
                            && (found == null || (d.isUnique() && !found.isUnique()))) {
                        found = d;
                    }
                }
            }
            index = found;
            session = found == null ? null : k.read.indexReadSession(found);
            cursor = found == null ? null : k.track(k.cursors.allocateNodeValueIndexCursor(k.cursorContext, k.memory));
        }

        /** The node's id, or -1 if there is none. */
        long find(String key) throws KernelException {
            if (cache != null) {
                Long hit = cache.get(key);
                if (hit != null) {
                    return hit;
                }
            }
            long id = lookup(key);
            if (cache != null) {
                cache.put(key, id);
            }
            return id;
        }

        @SuppressWarnings("deprecation") // Node.getId(): the internal id is what the kernel API takes
        private long lookup(String key) throws KernelException {
            if (index == null) {
                if (keyId < 0 && !merging) {
                    return -1;
                }
                Node node = tx.findNode(label, KEY, key);
                return node == null ? -1 : node.getId();
            }
            PropertyIndexQuery.ExactPredicate query = PropertyIndexQuery.exact(keyId, Values.utf8Value(key));
            if (merging && index.isUnique()) {
                // Like Cypher's MERGE: the index entry is locked, so concurrent merges of one key serialise.
                return k.read.lockingNodeUniqueIndexSeek(index, cursor, query);
            }
            k.read.nodeIndexSeek(k.ktx.queryContext(), session, cursor, IndexQueryConstraints.unconstrained(), query);
            long id = -1;
            if (cursor.next()) {
                id = cursor.nodeReference();
                if (cursor.next()) {
                    throw new InvalidArgument("more than one :" + label.name() + " node has key " + key);
                }
            }
            return id;
        }
    }

    /**
     * The row properties: {@code common} overlaid with one value per column. Values are converted
     * once, up front, to Neo4j values (lists become typed arrays). Per name, either a constant or one
     * value per row (null = not set in that row).
     */
    private static final class Props {
        final String[] names;
        final Value[] constant;
        final Value[][] perRow;

        Props(Map<String, Object> common, Map<String, Object> columns, int rows) {
            Map<String, Object> c = common == null ? Map.of() : common;
            Map<String, Object> cols = columns == null ? Map.of() : columns;
            Map<String, Value> constants = new LinkedHashMap<>();
            for (Map.Entry<String, Object> e : c.entrySet()) {
                String name = checkName("common", e.getKey());
                Object v = StorableValues.storable("common['" + name + "']", e.getValue());
                if (v != null) {
                    constants.put(name, Values.of(v));
                }
            }
            Map<String, Value[]> columnValues = new LinkedHashMap<>();
            for (Map.Entry<String, Object> e : cols.entrySet()) {
                String name = checkName("columns", e.getKey());
                if (!(e.getValue() instanceof List<?> list)) {
                    throw new InvalidArgument("columns['" + name + "'] must be a list with one value per row, got "
                            + (e.getValue() == null ? "null" : e.getValue().getClass().getSimpleName()));
                }
                if (list.size() != rows) {
                    throw new InvalidArgument("columns['" + name + "'] has " + list.size() + " values but there are "
                            + rows + " rows");
                }
                Value fallback = constants.remove(name); // where the column is null, common applies
                Value[] vals = new Value[rows];
                int i = 0;
                for (Object v : list) {
                    vals[i] = v == null ? fallback : Values.of(StorableValues.storable("columns['" + name + "'][" + i + "]", v));
                    i++;
                }
                columnValues.put(name, vals);
            }
            int m = constants.size() + columnValues.size();
            names = new String[m];
            constant = new Value[m];
            perRow = new Value[m][];
            int j = 0;
            for (Map.Entry<String, Value> e : constants.entrySet()) {
                names[j] = e.getKey();
                constant[j++] = e.getValue();
            }
            for (Map.Entry<String, Value[]> e : columnValues.entrySet()) {
                names[j] = e.getKey();
                perRow[j++] = e.getValue();
            }
        }

        int index(String name) {
            for (int j = 0; j < names.length; j++) {
                if (names[j].equals(name)) {
                    return j;
                }
            }
            return -1;
        }

        Value value(int slot, int row) {
            return perRow[slot] == null ? constant[slot] : perRow[slot][row];
        }

        int[] tokenIds(TokenWrite tokens) throws KernelException {
            int[] ids = new int[names.length];
            for (int j = 0; j < names.length; j++) {
                ids[j] = tokens.propertyKeyGetOrCreateForName(names[j]);
            }
            return ids;
        }

        void putAll(IntObjectHashMap<Value> into, int[] ids, int row) {
            for (int j = 0; j < names.length; j++) {
                Value v = value(j, row);
                if (v != null) {
                    into.put(ids[j], v);
                }
            }
        }

        /**
         * Puts the row's values that differ from what the entity has now. Reads the entity's
         * properties once (node cursor or relationship cursor, whichever is given, positioned).
         * "Differ" is strict: 7 vs 7.0 is a change (the stored type changes), like Cypher's SET.
         */
        void putChanged(IntObjectHashMap<Value> into, int[] ids, int row, Kernel k, NodeCursor node,
                RelationshipTraversalCursor rel) {
            putAll(into, ids, row);
            if (into.isEmpty()) {
                return;
            }
            PropertySelection selection = PropertySelection.selection(into.keySet().toArray());
            if (node != null) {
                node.properties(k.props, selection);
            } else {
                rel.properties(k.props, selection);
            }
            while (k.props.next()) {
                int key = k.props.propertyKey();
                Value want = into.get(key);
                if (want != null && StorableValues.sameStored(k.props.propertyValue(), want)) {
                    into.remove(key);
                }
            }
        }
    }

    static String checkName(String what, String name) {
        if (name == null || !NAME.matcher(name).matches()) {
            throw new InvalidArgument(what + ": invalid name " + (name == null ? "null" : "'" + name + "'")
                    + " (must match [A-Za-z_][A-Za-z0-9_]*)");
        }
        return name;
    }

    private static void requireNonNull(String what, Object v) {
        if (v == null) {
            throw new InvalidArgument(what + " must not be null");
        }
    }
}
