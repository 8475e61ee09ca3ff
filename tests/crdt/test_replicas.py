from crdt.testing import LWWMapReplicas

TestLWWMapReplicas = LWWMapReplicas.TestCase
